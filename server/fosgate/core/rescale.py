"""Pixel-size rescaling between a slide and the scale a model was trained at.

``f = slide_um_per_px / model_um_per_px`` model pixels per slide pixel (f < 1: the slide is finer than
the model, it is shrunk). The *model-scale image* of an ``H x W`` slide is ``round(H f) x round(W f)``
px; its pixel ``i`` (per axis) has its centre at slide coordinate ``(i + 0.5) / f - 0.5`` and takes the
linearly interpolated value of the slide after a Gaussian anti-alias filter of sigma
``max(0, (1/f - 1) / 2)`` slide px (edges: nearest pixel).

Invariants
- Pointwise definition: :func:`read_rescaled` of any window equals the same window of
  :func:`resample_image` of the whole image (the filter is truncated at ``TRUNCATE`` sigma and each
  read takes that margin plus the interpolation support), so tiled prediction at the model's scale
  still equals one pass over the model-scale image.
- Maps go back to the slide's own pixels the same pointwise way (:func:`resample_maps`, linear
  interpolation at ``(y + 0.5) f - 0.5``, no filter), band by band in the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

TRUNCATE = 4.0
TOLERANCE = 0.02  # pixel sizes within 2 % of each other are treated as equal (no resampling)


def scale_factor(slide_um: float, model_um: float) -> float:
    """Model pixels per slide pixel; 1.0 when either size is unknown (0) or they agree within 2 %."""
    if not slide_um or not model_um or slide_um <= 0 or model_um <= 0:
        return 1.0
    f = slide_um / model_um
    return 1.0 if abs(f - 1.0) <= TOLERANCE else float(f)


def scaled_size(n: int, f: float) -> int:
    return max(1, int(round(n * f)))


def _sigma(f: float) -> float:
    return max(0.0, (1.0 / f - 1.0) / 2.0)


def _coords(i0: int, i1: int, f: float) -> np.ndarray:
    return (np.arange(i0, i1, dtype=np.float64) + 0.5) / f - 0.5


def _interp_axis(block: np.ndarray, coords: np.ndarray, offset: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``block`` (whose index 0 is source index ``offset``) at source ``coords``
    along ``axis``, clamped to the block (which must reach the true edges where coords do)."""
    n = block.shape[axis]
    c = np.clip(coords - offset, 0, n - 1)
    lo = np.floor(c).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    wgt = (c - lo).astype(np.float32)
    a, b = np.take(block, lo, axis=axis), np.take(block, hi, axis=axis)
    shape = [1] * block.ndim
    shape[axis] = -1
    wgt = wgt.reshape(shape)
    return a * (1 - wgt) + b * wgt


def _resample_block(block: np.ndarray, y_coords, x_coords, sigma: float, full_h: int, full_w: int, by0: int,
                    bx0: int) -> np.ndarray:
    x = block.astype(np.float32)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma=(sigma, sigma) + (0,) * (x.ndim - 2), mode="nearest",
                                    truncate=TRUNCATE)
    # clamp coordinates to the whole image, then read them in block coordinates
    yc = np.clip(y_coords, 0, full_h - 1)
    xc = np.clip(x_coords, 0, full_w - 1)
    x = _interp_axis(x, yc, by0, 0)
    return _interp_axis(x, xc, bx0, 1)


def _margin(f: float) -> int:
    return int(math.ceil(TRUNCATE * _sigma(f))) + 2


def read_rescaled(read: Callable[[int, int, int, int], np.ndarray], height: int, width: int, f: float
                  ) -> Callable[[int, int, int, int], np.ndarray]:
    """A reader of the model-scale image (module docstring) from a reader of the ``height x width``
    source: ``reader(y0, y1, x0, x1)`` in model-scale coordinates (inside the model-scale size)."""
    m = _margin(f)
    sigma = _sigma(f)

    def reader(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        yc, xc = _coords(y0, y1, f), _coords(x0, x1, f)
        sy0 = max(0, int(math.floor(yc.min())) - m)
        sy1 = min(height, int(math.ceil(yc.max())) + m + 1)
        sx0 = max(0, int(math.floor(xc.min())) - m)
        sx1 = min(width, int(math.ceil(xc.max())) + m + 1)
        block = read(sy0, sy1, sx0, sx1)
        return _resample_block(block, yc, xc, sigma, height, width, sy0, sx0)

    return reader


def resample_image(image: np.ndarray, f: float) -> np.ndarray:
    """The whole model-scale image of an in-memory ``(h, w, C)`` image."""
    h, w = image.shape[:2]
    reader = read_rescaled(lambda y0, y1, x0, x1: image[y0:y1, x0:x1], h, w, f)
    return reader(0, scaled_size(h, f), 0, scaled_size(w, f))


def read_maps_at_source(read_model: Callable[[int, int, int, int], np.ndarray], model_h: int, model_w: int,
                        f: float) -> Callable[[int, int, int, int], np.ndarray]:
    """A reader of maps at the slide's pixels from a reader of model-scale maps ``(h, w, K)``."""

    def reader(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        yc = (np.arange(y0, y1, dtype=np.float64) + 0.5) * f - 0.5
        xc = (np.arange(x0, x1, dtype=np.float64) + 0.5) * f - 0.5
        my0 = max(0, int(math.floor(yc.min())))
        my1 = min(model_h, int(math.ceil(yc.max())) + 2)
        mx0 = max(0, int(math.floor(xc.min())))
        mx1 = min(model_w, int(math.ceil(xc.max())) + 2)
        block = np.asarray(read_model(my0, my1, mx0, mx1), np.float32)
        yc, xc = np.clip(yc, 0, model_h - 1), np.clip(xc, 0, model_w - 1)
        return _interp_axis(_interp_axis(block, yc, my0, 0), xc, mx0, 1)

    return reader


def resample_maps(maps: np.ndarray, shape: tuple[int, int], f: float) -> np.ndarray:
    """In-memory model-scale maps ``(h', w', K)`` back to ``shape`` (the source image's pixels)."""
    mh, mw = maps.shape[:2]
    reader = read_maps_at_source(lambda y0, y1, x0, x1: maps[y0:y1, x0:x1], mh, mw, f)
    return reader(0, shape[0], 0, shape[1])
