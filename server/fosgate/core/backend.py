"""Where window predictions run: in this process (:class:`LocalBackend`) or on Dask workers
(``fosgate.distributed.DaskExecutor``), behind one interface.

A :class:`WindowJob` says everything a worker needs to predict windows of a slide by itself: the
slide file and channel, the region, the normalisation range, the pixel-size factor and how to encode
each core (``"post"``: ``fosgate.core.model.encode_core`` with the threshold, uint8; ``"raw"``: the
float maps as float16, used when the maps are resampled back to the slide's pixels afterwards).
:func:`make_reader` builds the window reader from it, the same function for every backend, so every
backend hands ``on_core(cy0, cy1, cx0, cx1, core)`` the same bytes for a window.

A backend implements ``predict_cores(model, slide, job, windows, on_core, progress, should_cancel)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fosgate.core.normalize import Normalization

OnCore = Callable[[int, int, int, int, np.ndarray], None]


@dataclass(frozen=True)
class WindowJob:
    slide_path: str
    channel: int | None
    region: tuple[int, int, int, int]  # x, y, width, height in slide pixels
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    clip_max: float
    factor: float = 1.0  # model pixels per slide pixel (fosgate.core.rescale)
    encoding: str = "post"  # "post" or "raw"
    threshold: float = 0.5
    tta: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width of the image the network sees (the model-scale region)."""
        from fosgate.core.rescale import scaled_size

        _, _, rw, rh = self.region
        if self.factor == 1.0:
            return rh, rw
        return scaled_size(rh, self.factor), scaled_size(rw, self.factor)


def make_reader(slide, job: WindowJob) -> Callable[[int, int, int, int], np.ndarray]:
    """``read(y0, y1, x0, x1)``: normalised network input at the model's scale, from an open slide."""
    rx, ry, rw, rh = job.region
    lo, hi = np.asarray(job.lo, np.float32), np.asarray(job.hi, np.float32)

    def read_norm(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return Normalization.apply(slide.read(ry + y0, ry + y1, rx + x0, rx + x1), lo, hi, job.clip_max)

    if job.factor == 1.0:
        return read_norm
    from fosgate.core.rescale import read_rescaled

    return read_rescaled(read_norm, rh, rw, job.factor)


def encode(prob: np.ndarray, job: WindowJob) -> np.ndarray:
    """A core's maps as the pipeline stores them (module docstring)."""
    from fosgate.core.model import encode_core

    if job.encoding == "raw":
        return (prob if prob.ndim == 3 else prob[..., None]).astype(np.float16)
    return encode_core(prob, job.threshold)


def predict_windows(network, read, job: WindowJob, windows, on_core: OnCore,
                    progress: Callable[[int, int], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> int:
    """Predict ``windows`` in this process and hand each encoded core to ``on_core``."""
    from fosgate.core.predict import predict_tiled

    h, w = job.shape

    def on_block(cy0, cy1, cx0, cx1, prob):
        on_core(cy0, cy1, cx0, cx1, encode(prob, job))

    return predict_tiled(network, read, h, w, tile=0, halo=0, on_block=on_block, progress=progress,
                         should_cancel=should_cancel, tta=job.tta, windows=list(windows))


class LocalBackend:
    """Windows predicted one by one in this process."""

    def describe(self) -> str:
        return "this process"

    def predict_cores(self, model, slide, job: WindowJob, windows, on_core: OnCore,
                      progress: Callable[[int, int], None] | None = None,
                      should_cancel: Callable[[], bool] | None = None) -> int:
        return predict_windows(model.network, make_reader(slide, job), job, windows, on_core, progress,
                               should_cancel)
