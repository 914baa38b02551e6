"""Sliding-window tiling with a halo (margin): pure geometry plus the reference "crop" export.

Two plans, both covering every pixel of an ``height x width`` image exactly once with their cores:

- :func:`plan_windows` (prediction): a grid of equal input windows (``tile + 2 * halo`` per axis,
  rectangular if asked), the fewest that cover the image, with origins on the network's pooling grid
  (multiples of ``align``) spread evenly from the top-left corner to the bottom-right one of the
  (padded) image. Their cores partition the image; every core edge lies at least ``halo`` px inside
  its window or on the true image border. A core pixel therefore always sees at least ``halo`` px of
  real context or the image border, which is what makes stitching seam-free, and border windows
  spend no halo beyond the image.
- :func:`plan_crop_tiles` (the reference "crop" step, 128 px tiles with a 4 px margin): tiles of
  ``tile`` px stepping by ``tile - 2 * margin``; unlike the reference code the last row and column
  are kept (the last tile is shifted back to end at the border), and each tile records the core
  rectangle it is responsible for when stitching, so nothing is shifted or lost.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Window:
    """An input window ``[wy0:wy1, wx0:wx1]`` and the core ``[cy0:cy1, cx0:cx1]`` it is kept for."""

    wy0: int
    wy1: int
    wx0: int
    wx1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int
    row: int
    col: int


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _axis_windows(n: int, tile: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """(w0, w1, c0, c1) along one axis of length ``n``: the fewest windows of one length
    ``min(tile + 2 * halo, padded)`` that cover the axis, origins spread evenly on the ``align`` grid from
    0 to ``padded - length`` (window coordinates may run past ``n`` up to the padded length
    ``round_up(n, align)``, read as zeros). A split between two neighbouring cores lies at least
    ``halo`` inside both windows; the first and last windows need no halo at the image border, so
    their cores are up to ``tile + halo`` long (less recomputed overlap than equal cores)."""
    padded = round_up(n, align)
    halo = round_up(halo, align)  # keeps window origins on the grid without eating into the halo
    size = min(tile + 2 * halo, padded)
    if size == padded:
        return [(0, padded, 0, n)]
    reach = size - 2 * halo  # how far a window may start past its neighbour (a positive multiple of align)
    k = 1 + -(-(padded - size) // reach)
    units = (padded - size) // align
    origins = [align * (i * units // (k - 1)) for i in range(k)]
    cuts = [0]
    for i in range(1, k):
        lo, hi = origins[i] + halo, origins[i - 1] + size - halo  # the split must see `halo` in both windows
        cuts.append(min(lo + (hi - lo) // 2 // align * align, n - 1))
    cuts.append(n)
    out = []
    for i, w0 in enumerate(origins):
        assert w0 <= cuts[i] < cuts[i + 1] <= w0 + size
        out.append((w0, w0 + size, cuts[i], cuts[i + 1]))
    return out


def _pair(tile: int | tuple[int, int]) -> tuple[int, int]:
    return (tile, tile) if isinstance(tile, int | np.integer) else (int(tile[0]), int(tile[1]))


def plan_windows(height: int, width: int, tile: int | tuple[int, int], halo: int, align: int = 16) -> list[Window]:
    """Prediction windows (see module docstring) for core size ``tile`` (an int, or (height, width) for
    rectangular windows), each a positive multiple of ``align``. All windows have one size,
    ``min(tile + 2 * halo, padded image)`` per axis (halo rounded up to ``align``), so one compiled
    graph serves them all."""
    th, tw = _pair(tile)
    if th <= 0 or tw <= 0 or th % align or tw % align:
        raise ValueError(f"tile size {tile} must be a positive multiple of {align}")
    if halo < 0:
        raise ValueError("halo must be >= 0")
    ys = _axis_windows(height, th, halo, align)
    xs = _axis_windows(width, tw, halo, align)
    return [Window(wy0, wy1, wx0, wx1, cy0, cy1, cx0, cx1, r, c)
            for r, (wy0, wy1, cy0, cy1) in enumerate(ys) for c, (wx0, wx1, cx0, cx1) in enumerate(xs)]


@dataclass(frozen=True)
class CropTile:
    """A ``tile`` x ``tile`` crop at (y, x) (smaller only if the image is) and its stitching core."""

    row: int
    col: int
    y: int
    x: int
    height: int
    width: int
    core_y: int
    core_x: int
    core_height: int
    core_width: int


def _axis_crops(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    size = min(tile, n)
    step = tile - 2 * margin
    starts = list(range(0, max(n - size, 0) + 1, step))
    if starts[-1] + size < n:
        starts.append(n - size)
    out = []
    for i, s in enumerate(starts):
        c0 = 0 if i == 0 else s + margin
        nxt = starts[i + 1] if i + 1 < len(starts) else None
        c1 = n if nxt is None else nxt + margin
        c0 = min(c0, c1)
        out.append((s, size, c0, c1 - c0))
    return out


def plan_crop_tiles(height: int, width: int, tile: int = 128, margin: int = 4) -> list[CropTile]:
    """Reference-style crops covering the whole image; cores partition the image."""
    if tile <= 0 or margin < 0 or 2 * margin >= tile:
        raise ValueError(f"tile {tile} and margin {margin}: need tile > 2 * margin >= 0")
    ys, xs = _axis_crops(height, tile, margin), _axis_crops(width, tile, margin)
    return [CropTile(r, c, y, x, h, w, cy, cx, ch, cw)
            for r, (y, h, cy, ch) in enumerate(ys) for c, (x, w, cx, cw) in enumerate(xs)]


def iter_crops(slide, tiles: list[CropTile], region: tuple[int, int, int, int] | None = None
               ) -> Iterator[tuple[CropTile, np.ndarray]]:
    rx, ry = (region[0], region[1]) if region else (0, 0)
    for t in tiles:
        yield t, slide.read(ry + t.y, ry + t.y + t.height, rx + t.x, rx + t.x + t.width)


def export_tiles(slide, out: Path, tile: int = 128, margin: int = 4, fmt: str = "png",
                 region: tuple[int, int, int, int] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write every crop of ``slide`` (or a region) as ``tile_rRRRR_cCCCC.<fmt>`` plus ``tiles.csv``
    (name, row, col, x, y, width, height in slide pixels and the core rectangle). Returns the CSV."""
    import tifffile
    from PIL import Image

    fmt = fmt.lower().lstrip(".") or "png"
    if fmt not in ("png", "tif", "tiff"):
        raise ValueError(f"tile format must be png or tif, not {fmt}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = slide.info
    rx, ry, rw, rh = region if region else (0, 0, info.width, info.height)
    tiles = plan_crop_tiles(rh, rw, tile, margin)
    csv_path = out / "tiles.csv"
    with open(csv_path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["name", "row", "col", "x", "y", "width", "height", "core_x", "core_y", "core_width",
                     "core_height"])
        for i, (t, arr) in enumerate(iter_crops(slide, tiles, (rx, ry, rw, rh))):
            name = f"tile_r{t.row:04d}_c{t.col:04d}.{fmt}"
            img = arr[..., 0] if arr.shape[-1] == 1 else arr
            if fmt == "png":
                Image.fromarray(img).save(out / name)
            else:
                tifffile.imwrite(out / name, img, photometric="rgb" if img.ndim == 3 else "minisblack")
            wr.writerow([name, t.row, t.col, rx + t.x, ry + t.y, t.width, t.height, rx + t.core_x, ry + t.core_y,
                         t.core_width, t.core_height])
            if progress:
                progress(i + 1, len(tiles))
    return csv_path
