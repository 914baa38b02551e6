"""Label proposals for tiles: classical labeller, a trained model, Segment Anything (``core.sam``).

Every proposer returns uint32 instance labels of the tile's size (0 = background); proposals are
only suggestions until a person accepts, rejects or edits them (see ``App.review_proposal``).

Model proposals are predicted with the model's full halo of context read from the slide around the
tile, so a proposal equals the corresponding crop of a whole-slide prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from fosgate.core.classical import classical_labels
from fosgate.core.normalize import Normalization
from fosgate.core.predict import predict_tiled
from fosgate.core.tiling import CropTile, round_up

Rect = tuple[int, int, int, int]  # x, y, width, height in slide pixels


def classical_proposal(slide, rect: Rect, **kw) -> np.ndarray:
    x, y, w, h = rect
    return classical_labels(slide.read(y, y + h, x, x + w), **kw)


class ModelProposer:
    """Predictions of one ``FosgateModel`` on tiles of one slide (normalised with the slide's statistics),
    post-processed with the model's own calibrated settings unless ``threshold``/``min_size`` are given."""

    def __init__(self, model, slide, threshold: float | None = None, min_size: int | None = None):
        self.model, self.slide = model, slide
        self.norm = model.normalization
        self.lo, self.hi = self.norm.stats(slide)
        self.halo = model.halo
        changes = {}
        if threshold is not None:
            changes["threshold"] = threshold
        if min_size is not None:
            changes["min_size_px"] = min_size
        self.post = replace(model.post, **changes)

    def maps(self, rect: Rect) -> np.ndarray:
        """``(h, w, K)`` maps of ``rect`` with full context (equal to a whole-slide prediction's crop)."""
        x, y, w, h = rect
        info = self.slide.info
        # a window aligned to the 16-px pooling grid of the slide, holding rect plus the halo
        x0, y0 = max(0, (x - self.halo) // 16 * 16), max(0, (y - self.halo) // 16 * 16)
        x1, y1 = min(info.width, x + w + self.halo), min(info.height, y + h + self.halo)
        prob = np.zeros((y1 - y0, x1 - x0, len(self.model.outputs)), np.float32)

        def read(a0, a1, b0, b1):
            raw = self.slide.read(y0 + a0, y0 + a1, x0 + b0, x0 + b1)
            return Normalization.apply(raw, self.lo, self.hi, self.norm.clip_max)

        def on_block(cy0, cy1, cx0, cx1, p):
            prob[cy0:cy1, cx0:cx1] = p if p.ndim == 3 else p[..., None]

        tile = round_up(max(y1 - y0, x1 - x0), 16)
        predict_tiled(self.model.network, read, y1 - y0, x1 - x0, tile=tile, halo=0, on_block=on_block)
        return prob[y - y0:y - y0 + h, x - x0:x - x0 + w]

    def probability(self, rect: Rect) -> np.ndarray:
        """Foreground probabilities of ``rect`` with full context."""
        return self.maps(rect)[..., 0]

    def __call__(self, rect: Rect) -> tuple[np.ndarray, float]:
        """(instance labels, uncertainty) for one tile; uncertainty = mean of 4 p (1 - p)."""
        maps = self.maps(rect)
        labels = self.model.instances_from_maps(maps, self.post)
        p = maps[..., 0]
        return labels, float(np.mean(4 * p * (1 - p)))


def tile_uncertainty(model, slide, tiles: Sequence[CropTile], tile_size: int = 0,
                     should_cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Mean ``4 p (1 - p)`` of the foreground probability over each crop tile's core, from one seam-free
    pass of ``model`` (a ``FosgateModel``) over the slide (crop-tile cores partition the image, so every
    pixel counts once)."""
    from fosgate.core.predict import auto_tile

    norm = model.normalization
    lo, hi = norm.stats(slide)
    info = slide.info
    halo = model.halo
    tile = tile_size or auto_tile(info.height, info.width, info.channels, memory_budget_bytes=1.0e9, halo=halo)
    sums = np.zeros(len(tiles))
    areas = np.zeros(len(tiles))
    cores = np.array([(t.core_y, t.core_y + t.core_height, t.core_x, t.core_x + t.core_width) for t in tiles])

    def read(y0, y1, x0, x1):
        return Normalization.apply(slide.read(y0, y1, x0, x1), lo, hi, norm.clip_max)

    def on_block(cy0, cy1, cx0, cx1, p):
        p = p if p.ndim == 2 else p[..., 0]
        u = 4 * p * (1 - p)
        hit = np.nonzero((cores[:, 0] < cy1) & (cores[:, 1] > cy0) & (cores[:, 2] < cx1) & (cores[:, 3] > cx0))[0]
        for i in hit:
            a0, a1 = max(cores[i, 0], cy0), min(cores[i, 1], cy1)
            b0, b1 = max(cores[i, 2], cx0), min(cores[i, 3], cx1)
            sums[i] += u[a0 - cy0:a1 - cy0, b0 - cx0:b1 - cx0].sum()
            areas[i] += (a1 - a0) * (b1 - b0)

    predict_tiled(model.network, read, info.height, info.width, tile=tile, halo=halo, on_block=on_block,
                  should_cancel=should_cancel)
    return sums / np.maximum(areas, 1)
