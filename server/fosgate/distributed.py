"""Fan prediction out over Dask distributed.

The server owns one :class:`DaskExecutor`, which connects lazily on first use to
- an in-process ``LocalCluster`` (default: worker threads inside the server, nothing to install or start),
- a ``LocalCluster`` of worker processes (``--dask-workers N --dask-processes``), or
- an existing scheduler (``--dask-scheduler tcp://host:8786``), e.g. one started by dask-jobqueue's
  ``SLURMCluster`` on an HPC system (docs/scale-out.md). Workers then need fosgate installed and the
  server's data folder and slides on a shared file system.

Auto-labelling (classical or model proposals) fans out the same way, in batches of tiles, and so does
the clustering job's encoding of every tile with the trained autoencoder.

Work unit: a block of prediction windows (one row of the seam-free window plan). Each task reads its
windows from the slide file, predicts them and returns their thresholded cores, bit-packed (1/8 byte
per pixel); the server writes each core into the mask as the task completes and drops it. Workers
therefore never write shared files, and a task that is run twice (a retry after a worker died) returns
the same bits: the stitched mask is the same whatever the scheduling. Models reach each worker once: a worker loads a model directory the first time a task
needs it and keeps it (keyed by path) for later tasks.

Invariant: ``predict_mask_distributed`` fills the mask exactly as the in-process ``predict_tiled``
would (tests/test_distributed.py compares them, with a worker killed mid-job).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import numpy as np

_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def _model(model_dir: str):
    with _MODELS_LOCK:
        if model_dir not in _MODELS:
            from fosgate.core.modelio import load_model

            _MODELS[model_dir] = load_model(model_dir)[0]
        return _MODELS[model_dir]


def predict_block(model_dir: str, slide_path: str, channel: int | None, lo: list[float], hi: list[float],
                  clip_max: float, region: tuple[int, int, int, int], windows: list,
                  threshold: float) -> list[tuple[int, int, int, int, np.ndarray]]:
    """A Dask task: predict ``windows`` (``fosgate.core.tiling.Window``) of ``region`` of the slide.
    Returns ``(cy0, cy1, cx0, cx1, np.packbits(core >= threshold))`` per window."""
    from fosgate.core.normalize import Normalization
    from fosgate.core.predict import _predict_batch, read_window
    from fosgate.core.slides import open_slide

    model = _model(model_dir)
    rx, ry, rw, rh = region
    lo_a, hi_a = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    cores = []
    with open_slide(slide_path, channel=channel) as slide:
        def read(y0, y1, x0, x1):
            return Normalization.apply(slide.read(ry + y0, ry + y1, rx + x0, rx + x1), lo_a, hi_a, clip_max)

        for win in windows:
            prob = _predict_batch(model, read_window(read, win, rh, rw)[None])[0]
            core = prob[win.cy0 - win.wy0:win.cy1 - win.wy0, win.cx0 - win.wx0:win.cx1 - win.wx0]
            cores.append((win.cy0, win.cy1, win.cx0, win.cx1, np.packbits(core >= threshold)))
    return cores


def propose_block(method: str, model_dir: str, slide_path: str, channel: int | None,
                  regions: list[tuple[int, int, int, int]]) -> list[tuple[np.ndarray, float]]:
    """A Dask task: label proposals (instance labels, uncertainty) for a batch of tiles."""
    from fosgate.core.autolabel import ModelProposer, classical_proposal
    from fosgate.core.slides import open_slide

    out = []
    with open_slide(slide_path, channel=channel) as slide:
        if method == "model":
            from fosgate.core.modelio import load_model

            meta = load_model(model_dir)[1]  # small: the weights come from the worker's cache
            proposer = ModelProposer(_model(model_dir), meta, slide)
        for region in regions:
            if method == "classical":
                out.append((classical_proposal(slide, tuple(region)), 0.0))
            else:
                out.append(proposer(tuple(region)))
    return out


def encode_block(encoder_path: str, slide_path: str, channel: int | None, lo: list[float], hi: list[float],
                 tile: int, origin: tuple[int, int], tiles: list[tuple[int, ...]]):
    """A Dask task: autoencoder codes, mean and spread of a block of crop tiles."""
    from fosgate.core.clustering import encode_tiles
    from fosgate.core.slides import open_slide
    from fosgate.core.tiling import CropTile

    encoder = _keras(encoder_path)
    with open_slide(slide_path, channel=channel) as slide:
        return encode_tiles(encoder, slide, [CropTile(*t) for t in tiles], np.asarray(lo, np.float32),
                            np.asarray(hi, np.float32), tile, origin)


def _keras(path: str):
    with _MODELS_LOCK:
        if path not in _MODELS:
            import keras

            _MODELS[path] = keras.models.load_model(path, compile=False)
        return _MODELS[path]


class DaskExecutor:
    """A lazily connected Dask client; safe to share between job threads."""

    def __init__(self, scheduler: str = "", workers: int = 1, processes: bool = False, retries: int = 3):
        self.scheduler, self.workers, self.processes, self.retries = scheduler, workers, processes, retries
        self._client = None
        self._cluster = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                from distributed import Client, LocalCluster

                from fosgate.logs import configured, route_library_logs

                route_library_logs()  # distributed attaches a terminal handler on import: send it to the server log
                if self.scheduler:
                    self._client = Client(self.scheduler, timeout="30s")
                else:
                    # in-process workers log through the server's log file; worker processes keep to errors
                    quiet = False if configured() and not self.processes else 40
                    self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                 processes=self.processes, dashboard_address=None,
                                                 silence_logs=quiet)
                    self._client = Client(self._cluster)
            return self._client

    def describe(self) -> str:
        where = self.scheduler or ("local processes" if self.processes else "in-process")
        return f"Dask ({where}, {len(self.client.scheduler_info().get('workers', {}))} worker(s))"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None

    def propose(self, *, method: str, model_dir: str, slide_path: str, channel: int | None, regions: list,
                on_result: Callable[[int, np.ndarray, float, int], None], batch: int = 8,
                should_cancel: Callable[[], bool] | None = None) -> None:
        """Proposals for ``regions`` in batches of tiles; ``on_result(index, labels, uncertainty, done)``."""
        from distributed import as_completed

        from fosgate.errors import Cancelled

        client = self.client
        starts = list(range(0, len(regions), batch))
        futures = {client.submit(propose_block, method, model_dir, str(slide_path), channel,
                                 [list(r) for r in regions[s:s + batch]], retries=self.retries, pure=False,
                                 key=f"fosgate-propose-{uuid.uuid4().hex[:12]}-{s}"): s for s in starts}
        done = 0
        try:
            for fut in as_completed(list(futures)):
                if should_cancel and should_cancel():
                    raise Cancelled("Auto-labelling cancelled.")
                for k, (labels, uncertainty) in enumerate(fut.result()):
                    done += 1
                    on_result(futures[fut] + k, labels, uncertainty, done)
        except BaseException:
            client.cancel(list(futures))
            raise

    def encode(self, *, encoder_path: str, slide_path: str, channel: int | None, tiles, lo, hi, tile: int,
               origin: tuple[int, int], block: int = 256):
        """Codes of all tiles, in blocks over the workers; same order as ``tiles``."""
        from dataclasses import astuple

        client = self.client
        run = uuid.uuid4().hex[:12]
        futures = [client.submit(encode_block, encoder_path, str(slide_path), channel, list(map(float, lo)),
                                 list(map(float, hi)), tile, origin, [astuple(t) for t in tiles[i:i + block]],
                                 retries=self.retries, pure=False, key=f"fosgate-encode-{run}-{i}")
                   for i in range(0, len(tiles), block)]
        try:
            parts = client.gather(futures)
        except BaseException:
            client.cancel(futures)
            raise
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def predict_mask(self, *, model_dir: str, slide_path: str, channel: int | None, lo, hi, clip_max: float,
                     region: tuple[int, int, int, int], windows, threshold: float,
                     on_mask: Callable[[int, int, int, int, np.ndarray], None],
                     progress: Callable[[int, int], None] | None = None,
                     should_cancel: Callable[[], bool] | None = None) -> int:
        """Submit one task per row of windows; hand each thresholded core (uint8 0/1) to
        ``on_mask(cy0, cy1, cx0, cx1, core)`` in this thread as its task completes, reporting progress;
        raise if cancelled. A finished task's result is released at once, so memory holds only the rows
        in flight."""
        from distributed import as_completed

        from fosgate.errors import Cancelled

        rows: dict[int, list] = {}
        for w in windows:
            rows.setdefault(w.row, []).append(w)
        client = self.client
        run = uuid.uuid4().hex[:12]
        pending = {f.key: f for f in (
            client.submit(predict_block, model_dir, str(slide_path), channel, list(map(float, lo)),
                          list(map(float, hi)), clip_max, region, block, threshold,
                          retries=self.retries, pure=False, key=f"fosgate-predict-{run}-{r}")
            for r, block in rows.items())}
        done = 0
        try:
            for fut in as_completed(list(pending.values())):
                if should_cancel and should_cancel():
                    raise Cancelled("Prediction cancelled.")
                for cy0, cy1, cx0, cx1, bits in fut.result():
                    n = (cy1 - cy0) * (cx1 - cx0)
                    on_mask(cy0, cy1, cx0, cx1, np.unpackbits(bits, count=n).reshape(cy1 - cy0, cx1 - cx0))
                    done += 1
                del pending[fut.key]
                fut.release()
                if progress:
                    progress(done, len(windows))
        except BaseException:
            client.cancel(list(pending.values()))
            raise
        return done
