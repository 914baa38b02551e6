"""Explicit input normalisation, stored with each model.

Invariants
- ``apply(x, lo, hi)`` maps raw pixels to float32 as ``clip((x - lo) / (hi - lo), 0, clip_max)`` per
  channel, the same function for training tiles and for prediction windows.
- ``lo``/``hi`` are per-slide (``stats``): percentiles over a strided overview of the whole slide
  ("percentile" mode, as CSBDeep/StarDist do per image) or the dtype's full range ("range" mode, the
  reference paper's ``/ 255``). Stats depend on the slide only, never on the tile, so tiling cannot
  change a prediction.
- ``channels`` says whether percentiles are taken per channel ("independent") or over all channels
  at once ("joint", StarDist's ``axis_norm=(0, 1, 2)`` for colour images); "auto" is joint for
  3-channel (RGB) images and independent otherwise. Joint keeps a colour image's channel ratios: a
  nearly empty channel (the green and blue of a red-only stain) stays dark instead of having its
  noise stretched to full range. Models saved before this setting existed load as "independent",
  so their predictions do not change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

OVERVIEW_PIXELS = 4_000_000


@dataclass(frozen=True)
class Normalization:
    mode: str = "percentile"  # "percentile" or "range"
    low: float = 1.0
    high: float = 99.8
    clip_max: float = 1.5
    channels: str = "auto"  # "auto", "joint" or "independent" (module docstring)

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "range"):
            raise ValueError(f"unknown normalisation mode {self.mode!r}")
        if self.channels not in ("auto", "joint", "independent"):
            raise ValueError(f"unknown channel normalisation {self.channels!r}")

    def joint(self, channels: int) -> bool:
        """Whether ``channels``-channel images share one ``lo``/``hi``."""
        return self.channels == "joint" or (self.channels == "auto" and channels == 3)

    def stats(self, slide) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(lo, hi)`` for an open slide, from a strided overview read band by band."""
        if self.mode == "range":
            return self.stats_of_array(np.zeros((1, 1, slide.info.channels), np.dtype(slide.info.dtype)))
        return self.stats_of_array(self.overview(slide))

    def stats_of_array(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(lo, hi)`` of an in-memory ``(h, w, C)`` image (the same rule as ``stats``)."""
        c = image.shape[-1]
        if self.mode == "range":
            top = float(np.iinfo(image.dtype).max)
            return np.zeros(c, np.float32), np.full(c, top, np.float32)
        flat = image.reshape(-1, c).astype(np.float32)
        axis = None if self.joint(c) else 0
        lo = np.broadcast_to(np.percentile(flat, self.low, axis=axis), (c,)).astype(np.float32)
        hi = np.broadcast_to(np.percentile(flat, self.high, axis=axis), (c,)).astype(np.float32)
        return lo, np.maximum(hi, lo + 1.0)  # a flat image must not divide by zero

    @staticmethod
    def overview(slide, max_pixels: int = OVERVIEW_PIXELS) -> np.ndarray:
        info = slide.info
        step = max(1, int(np.ceil(np.sqrt(info.height * info.width / max_pixels))))
        band = max(step, (256 // step) * step)
        rows = []
        for y0 in range(0, info.height, band):
            block = slide.read(y0, min(info.height, y0 + band), 0, info.width)
            rows.append(block[::step, ::step].copy())  # a view would keep the whole band alive
        return np.concatenate(rows, axis=0)

    @staticmethod
    def apply(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, clip_max: float = 1.5) -> np.ndarray:
        x = x.astype(np.float32)
        out = (x - lo) / (hi - lo)
        return np.clip(out, 0.0, clip_max, out=out)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Normalization:
        """The stored setting; one saved before ``channels`` existed normalised channels independently."""
        if not text:
            return cls()
        fields = json.loads(text)
        fields.setdefault("channels", "independent")
        return cls(**fields)
