"""A synthetic c-fos-like slide with ground truth, for the demo and tests (no data download needed).

The slide is a grid of 512-px fields, each of one of the reference paper's five tile types:
near-black tissue, bright dense clusters (touching cells), cells with fibre "tails", clear sparse
cells, and fibre stripes without cells. Cell bodies are bright blurred ellipses (6-11 px radius);
the ground truth labels are the ellipses (tails and fibres are not cells).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

FIELD = 512
TYPES = ("dark", "dense", "tails", "sparse", "fibres")
PIXEL_SIZE_UM = 0.65


def _ellipse(ry: float, rx: float, angle: float) -> np.ndarray:
    r = int(np.ceil(max(ry, rx))) + 1
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _line(img: np.ndarray, y0: float, x0: float, angle: float, length: float, width: int, value: float,
          wobble: float, rng) -> None:
    n = int(length)
    ys = y0 + np.sin(angle) * np.arange(n) + np.cumsum(rng.normal(0, wobble, n))
    xs = x0 + np.cos(angle) * np.arange(n) + np.cumsum(rng.normal(0, wobble, n))
    h, w = img.shape
    for dy in range(-(width // 2), width - width // 2):
        for dx in range(-(width // 2), width - width // 2):
            yi = np.clip(np.round(ys).astype(int) + dy, 0, h - 1)
            xi = np.clip(np.round(xs).astype(int) + dx, 0, w - 1)
            img[yi, xi] = np.maximum(img[yi, xi], value)


def generate_cfos(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 image, uint32 truth labels, per-field type index) of a synthetic slide."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    fibres = np.zeros((height, width), np.float32)
    labels = np.zeros((height, width), np.uint32)
    gh, gw = -(-height // FIELD), -(-width // FIELD)
    kinds = np.resize(np.arange(len(TYPES)), gh * gw)
    rng.shuffle(kinds)
    kinds = kinds.reshape(gh, gw)
    background = np.zeros((gh, gw), np.float32)
    next_id = 1

    def add_cell(cy: float, cx: float, bright: float) -> bool:
        nonlocal next_id
        ry, rx = rng.uniform(6, 11), rng.uniform(6, 11)
        shape = _ellipse(ry, rx, rng.uniform(0, np.pi))
        r = shape.shape[0] // 2
        y0, x0 = int(cy) - r, int(cx) - r
        if y0 < 0 or x0 < 0 or y0 + shape.shape[0] > height or x0 + shape.shape[1] > width:
            return False
        sl = (slice(y0, y0 + shape.shape[0]), slice(x0, x0 + shape.shape[1]))
        free = shape & (labels[sl] == 0)
        if free.sum() < 0.75 * shape.sum():  # touching is fine, hiding a cell is not
            return False
        labels[sl][free] = next_id
        texture = rng.normal(1.0, 0.08, shape.shape).astype(np.float32)
        img[sl][free] = np.maximum(img[sl][free], bright * texture[free])
        next_id += 1
        return True

    for gy in range(gh):
        for gx in range(gw):
            kind = TYPES[kinds[gy, gx]]
            fy, fx = gy * FIELD, gx * FIELD
            fh, fw = min(FIELD, height - fy), min(FIELD, width - fx)

            def rand_point(margin: int = 14, fy=fy, fx=fx, fh=fh, fw=fw):
                return fy + rng.uniform(margin, max(margin + 1, fh - margin)), fx + rng.uniform(margin, max(margin + 1, fw - margin))

            if kind == "dark":
                background[gy, gx] = rng.uniform(2, 6)
                for _ in range(rng.integers(0, 3)):
                    add_cell(*rand_point(), rng.uniform(70, 110))
            elif kind == "dense":
                background[gy, gx] = rng.uniform(25, 40)
                for _ in range(rng.integers(2, 4)):
                    cy, cx = rand_point(60)
                    for _ in range(rng.integers(10, 22)):
                        add_cell(cy + rng.normal(0, 22), cx + rng.normal(0, 22), rng.uniform(170, 245))
            elif kind == "tails":
                background[gy, gx] = rng.uniform(15, 30)
                for _ in range(rng.integers(8, 14)):
                    cy, cx = rand_point(40)
                    if add_cell(cy, cx, rng.uniform(140, 220)):
                        _line(fibres, cy, cx, rng.uniform(0, 2 * np.pi), rng.uniform(25, 60), 2,
                              rng.uniform(70, 120), 0.3, rng)
            elif kind == "sparse":
                background[gy, gx] = rng.uniform(10, 20)
                for _ in range(rng.integers(10, 20)):
                    add_cell(*rand_point(), rng.uniform(130, 230))
            else:  # fibres
                background[gy, gx] = rng.uniform(15, 30)
                angle = rng.uniform(0, np.pi)
                for _ in range(rng.integers(4, 9)):
                    cy, cx = rand_point(0)
                    _line(fibres, cy - np.sin(angle) * 300, cx - np.cos(angle) * 300, angle, 600, int(rng.integers(2, 4)),
                          rng.uniform(80, 140), 0.15, rng)
    bg = np.kron(background, np.ones((FIELD, FIELD), np.float32))[:height, :width]
    bg = ndimage.gaussian_filter(bg, 40)
    img = np.maximum(img, fibres * (labels == 0))
    img = ndimage.gaussian_filter(img, 1.2)
    img += bg
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), labels, kinds


def write_cfos_slide(path: Path, height: int = 4096, width: int = 4096, seed: int = 0) -> tuple[Path, np.ndarray]:
    """Write a synthetic slide as a tiled OME-TIFF; returns (path, truth labels)."""
    import tifffile

    image, labels, _ = generate_cfos(height, width, seed)
    tifffile.imwrite(path, image, tile=(512, 512), compression="zlib", ome=True,
                     metadata={"axes": "YX", "Name": "fosgate synthetic c-fos slide", "PhysicalSizeX": PIXEL_SIZE_UM,
                               "PhysicalSizeY": PIXEL_SIZE_UM})
    return Path(path), labels
