"""Fan prediction out over Dask distributed.

The server owns one :class:`DaskExecutor`, which connects lazily on first use to
- an in-process ``LocalCluster`` (default: worker threads inside the server, nothing to install or start),
- a ``LocalCluster`` of worker processes (``--dask-workers N --dask-processes``), or
- an existing scheduler (``--dask-scheduler tcp://host:8786``), e.g. one started by dask-jobqueue's
  ``SLURMCluster`` on an HPC system (docs/scale-out.md). Workers then need fosgate installed and the
  server's data folder and slides on a shared file system.

Auto-labelling (classical or model proposals) fans out the same way, in batches of tiles, and so does
the clustering job's encoding of every tile with the trained autoencoder.

Prediction: ``DaskExecutor`` is a window backend of ``fosgate.core.backend`` (``predict_cores``), the
same interface as the in-process one. Work unit: a block of prediction windows (one row of the
seam-free window plan). Each task reads its windows from the slide file, predicts them and returns
their encoded cores (``fosgate.core.backend.encode``: the thresholded mask and the quantised centre
map, uint8); the server writes each core into its maps as the task completes and drops it. Workers
therefore never write shared files, and a task that is run twice (a retry after a worker died) returns
the same bits: the stitched mask is the same whatever the scheduling. Models reach each worker once: a worker loads a model directory the first time a task
needs it and keeps it (keyed by path) for later tasks.

Invariant: ``predict_cores`` fills the maps exactly as the in-process ``LocalBackend`` would (tests/test_distributed.py compares them, with a worker killed mid-job).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import numpy as np

_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def _model(model_dir: str):
    """The worker's cached ``FosgateModel`` of a model directory."""
    with _MODELS_LOCK:
        if model_dir not in _MODELS:
            from fosgate.core.model import FosgateModel

            _MODELS[model_dir] = FosgateModel.load(model_dir)
        return _MODELS[model_dir]


def predict_block(model_dir: str, job, windows: list) -> list[tuple[int, int, int, int, np.ndarray]]:
    """A Dask task: predict ``windows`` (``fosgate.core.tiling.Window``) of the slide described by ``job``
    (``fosgate.core.backend.WindowJob``). Returns ``(cy0, cy1, cx0, cx1, encoded core)`` per window,
    the same bytes the in-process backend produces."""
    from fosgate.core.backend import make_reader, predict_windows
    from fosgate.core.slides import open_slide

    model = _model(model_dir)
    cores: list = []
    with open_slide(job.slide_path, channel=job.channel) as slide:
        predict_windows(model.network, make_reader(slide, job), job, windows,
                        lambda cy0, cy1, cx0, cx1, core: cores.append((cy0, cy1, cx0, cx1, core)))
    return cores


def propose_block(method: str, model_dir: str, slide_path: str, channel: int | None,
                  regions: list[tuple[int, int, int, int]]) -> list[tuple[np.ndarray, float]]:
    """A Dask task: label proposals (instance labels, uncertainty) for a batch of tiles."""
    from fosgate.core.autolabel import ModelProposer, classical_proposal
    from fosgate.core.slides import open_slide

    out = []
    with open_slide(slide_path, channel=channel) as slide:
        if method == "model":
            proposer = ModelProposer(_model(model_dir), slide)
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
                    # every HTTP server Dask starts (scheduler and workers serve /health and /metrics even
                    # without a dashboard) listens on loopback only: fosgate binds nothing beyond 127.0.0.1
                    self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                 processes=self.processes,
                                                 **({"host": "127.0.0.1"} if self.processes else {}),
                                                 dashboard_address="127.0.0.1:0",
                                                 worker_dashboard_address="127.0.0.1:0", silence_logs=quiet)
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

    def predict_cores(self, model, slide, job, windows, on_core: Callable[[int, int, int, int, np.ndarray], None],
                      progress: Callable[[int, int], None] | None = None,
                      should_cancel: Callable[[], bool] | None = None) -> int:
        """The backend interface of ``fosgate.core.backend``: one task per row of windows; each encoded
        core goes to ``on_core(cy0, cy1, cx0, cx1, core)`` in this thread as its task completes, with
        progress; raise if cancelled. The workers load ``model.directory`` and read ``job.slide_path``
        themselves. A finished task's result is released at once, so memory holds only the rows in flight."""
        from distributed import as_completed

        from fosgate.errors import Cancelled, InvalidInput

        if not model.directory or not job.slide_path:
            raise InvalidInput("Dask workers need a saved model and a slide file.")
        rows: dict[int, list] = {}
        for w in windows:
            rows.setdefault(w.row, []).append(w)
        client = self.client
        run = uuid.uuid4().hex[:12]
        pending = {f.key: f for f in (
            client.submit(predict_block, model.directory, job, block, retries=self.retries, pure=False,
                          key=f"fosgate-predict-{run}-{r}")
            for r, block in rows.items())}
        done = 0
        try:
            for fut in as_completed(list(pending.values())):
                if should_cancel and should_cancel():
                    raise Cancelled("Prediction cancelled.")
                for cy0, cy1, cx0, cx1, core in fut.result():
                    on_core(cy0, cy1, cx0, cx1, core)
                    done += 1
                del pending[fut.key]
                fut.release()
                if progress:
                    progress(done, len(windows))
        except BaseException:
            client.cancel(list(pending.values()))
            raise
        return done
