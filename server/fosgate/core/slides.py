"""Lazy slide access: TIFF / OME-TIFF / BigTIFF through tifffile's zarr interface, PNG / JPEG via Pillow.

Invariants
- ``Slide.read(y0, y1, x0, x1)`` returns a ``(y1 - y0, x1 - x0, C)`` array of the slide's own dtype
  (uint8 or uint16) and reads only the chunks (tiles or strips) that overlap the window: the whole
  slide is never loaded, whatever its size (PNG/JPEG cannot be read partially and are capped).
- ``C`` is 1 for grey images and for a chosen channel, 3 for RGB(A, alpha dropped) images.
  Other multi-channel images (CYX, ...) need a channel choice; channel 0 is the default.
- Axes other than Y, X and the channel axis (Z, T, ...) are read at index 0.
- Bad files raise :class:`fosgate.errors.InvalidInput` (or ``TooLarge`` for absurd dimensions) with a
  message that says what is wrong and what to do, never a library traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fosgate.errors import InvalidInput, TooLarge

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_MAX_PIXELS = 400_000_000  # PNG/JPEG are decoded whole: above this use a tiled (Big)TIFF


@dataclass
class SlideInfo:
    """What the metadata RPC reports about a slide."""

    height: int
    width: int
    channels: int  # channels of what ``read`` returns (1 or 3)
    source_channels: int  # channels stored in the file
    dtype: str
    levels: int
    pixel_size_um: float  # 0 when the file does not say
    format: str  # "ome-tiff", "bigtiff", "tiff", "png", "jpeg"
    tiled: bool
    channel: int  # the chosen channel, -1 for all (grey or RGB)
    axes: str = ""


def _pixel_size_um(tf) -> float:
    """Pixel size from OME metadata, else from the TIFF resolution tags (ImageJ writes microns)."""
    try:
        if tf.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tf.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and el.get("PhysicalSizeX"):
                    value = float(el.get("PhysicalSizeX"))
                    unit = el.get("PhysicalSizeXUnit", "µm")
                    scale = {"nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4}.get(unit, 1.0)
                    return value * scale
        page = tf.pages.first
        tag = page.tags.get("XResolution")
        unit = page.tags.get("ResolutionUnit")
        if tag is not None:
            num, den = tag.value
            if num:
                per_unit = num / den
                ij = tf.imagej_metadata or {}
                if ij.get("unit") in ("micron", "um", "µm") and per_unit:
                    return 1.0 / per_unit
                if unit is not None and int(unit.value) == 3 and per_unit:  # centimetre
                    return 1e4 / per_unit
    except Exception:  # metadata is a nicety: never fail a slide over it
        return 0.0
    return 0.0


class Slide:
    """An open slide; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, channel: int | None = None, max_pixels: float = 1e10):
        self.path = Path(path)
        self._tf = None
        self._array = None
        if not self.path.is_file():
            raise InvalidInput(f"There is no image file at '{self.path.name}'.")
        if self.path.stat().st_size == 0:
            raise InvalidInput(f"'{self.path.name}' is empty (0 bytes).")
        low = self.path.name.lower()
        if low.endswith(PIL_SUFFIXES):
            self._open_pil(channel, max_pixels)
        else:
            self._open_tiff(channel, max_pixels)

    # ------------------------------------------------------------------ opening
    def _open_tiff(self, channel: int | None, max_pixels: float) -> None:
        import tifffile
        import zarr

        name = self.path.name
        try:
            tf = tifffile.TiffFile(self.path)
        except Exception as exc:
            raise InvalidInput(f"'{name}' is not a readable TIFF file ({_short(exc)}). "
                               "Re-save it from Fiji (File › Save As › Tiff) or QuPath.") from None
        self._tf = tf
        try:
            if not tf.series:
                raise InvalidInput(f"'{name}' contains no image.")
            series = tf.series[0]
            axes, shape, dtype = series.axes.upper(), tuple(series.shape), np.dtype(series.dtype)
            levels = len(series.levels)
            tiled = bool(series.keyframe.is_tiled)
            fmt = "ome-tiff" if tf.is_ome else ("bigtiff" if tf.is_bigtiff else "tiff")
            px = _pixel_size_um(tf)
        except InvalidInput:
            tf.close()
            raise
        except Exception as exc:
            tf.close()
            raise InvalidInput(f"'{name}' is a damaged TIFF file ({_short(exc)}).") from None
        self._setup(axes, shape, dtype, channel, max_pixels, levels, px, fmt, tiled)
        try:
            self._array = zarr.open_array(series.aszarr(level=0), mode="r")
        except Exception as exc:
            tf.close()
            raise InvalidInput(f"'{name}' cannot be read lazily ({_short(exc)}); "
                               "re-save it as a tiled OME-TIFF (e.g. with bfconvert or QuPath).") from None
        self._check_readable()

    def _open_pil(self, channel: int | None, max_pixels: float) -> None:
        from PIL import Image

        name = self.path.name
        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, before decoding
        try:
            with Image.open(self.path) as im:
                w, h = im.size
                fmt = (im.format or "").lower()
                if w * h > min(max_pixels, PIL_MAX_PIXELS):
                    raise TooLarge(f"'{name}' declares {w}x{h} px; PNG/JPEG slides are limited to "
                                   f"{PIL_MAX_PIXELS / 1e6:.0f} megapixels here. Save large slides as tiled "
                                   "(Big)TIFF or OME-TIFF, which fosgate reads without loading them whole.")
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im)
                    if arr.dtype != np.uint16:
                        if arr.min() < 0 or arr.max() > 65535:
                            raise InvalidInput(f"'{name}' holds 32-bit values; fosgate reads 8- and 16-bit images.")
                        arr = arr.astype(np.uint16)
                elif im.mode in ("L", "P", "1"):
                    arr = np.asarray(im.convert("L"))
                elif im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                    arr = np.asarray(im.convert("RGB"))
                else:
                    raise InvalidInput(f"'{name}' has pixel mode {im.mode}; fosgate reads 8- and 16-bit grey or RGB.")
        except (InvalidInput, TooLarge):
            raise
        except Exception as exc:
            raise InvalidInput(f"'{name}' is not a readable PNG/JPEG image ({_short(exc)}).") from None
        axes = "YXS" if arr.ndim == 3 else "YX"
        self._setup(axes, arr.shape, arr.dtype, channel, max_pixels, 1, 0.0, "jpeg" if "jp" in fmt else "png", False)
        self._array = arr

    def _setup(self, axes: str, shape: tuple[int, ...], dtype: np.dtype, channel: int | None, max_pixels: float,
               levels: int, px: float, fmt: str, tiled: bool) -> None:
        name = self.path.name
        if dtype not in SUPPORTED_DTYPES:
            raise InvalidInput(f"'{name}' stores {dtype} pixels; fosgate reads 8-bit and 16-bit images "
                               "(in Fiji: Image › Type › 16-bit, then save).")
        if "Y" not in axes or "X" not in axes:
            raise InvalidInput(f"'{name}' has axes {axes}; a slide needs Y and X axes.")
        self._axes = axes
        self._shape = shape
        h, w = shape[axes.index("Y")], shape[axes.index("X")]
        if h == 0 or w == 0:
            raise InvalidInput(f"'{name}' has no pixels ({w}x{h}).")
        if h * w > max_pixels:
            raise TooLarge(f"'{name}' is {w}x{h} px ({h * w / 1e9:.1f} gigapixels), above this server's "
                           f"limit of {max_pixels / 1e9:.1f} gigapixels.")
        chan_axis = "S" if "S" in axes else ("C" if "C" in axes else "")
        if "S" in axes and "C" in axes and shape[axes.index("C")] > 1:
            raise InvalidInput(f"'{name}' has both colour samples and channels (axes {axes}); export one channel.")
        n_src = shape[axes.index(chan_axis)] if chan_axis else 1
        self._chan_axis = chan_axis
        if channel is not None and channel >= 0:
            if channel >= n_src:
                raise InvalidInput(f"'{name}' has {n_src} channel(s); channel {channel} does not exist "
                                   f"(channels are numbered from 0).")
            self._channels = [channel]
        elif n_src == 1:
            self._channels = [0]
        elif chan_axis == "S" and n_src in (3, 4):
            self._channels = [0, 1, 2]  # RGB(A): drop alpha
        else:
            self._channels = [0]  # multi-channel fluorescence: channel 0 unless one is chosen
        self.info = SlideInfo(height=int(h), width=int(w), channels=len(self._channels), source_channels=int(n_src),
                              dtype=str(dtype), levels=int(levels), pixel_size_um=float(px), format=fmt,
                              tiled=tiled, channel=-1 if len(self._channels) > 1 or n_src == 1 else self._channels[0],
                              axes=axes)

    def _check_readable(self) -> None:
        """Decode the first and last rows so that truncated files fail now, not mid-job."""
        h, w = self.info.height, self.info.width
        self.read(0, 1, 0, min(w, 64))
        self.read(h - 1, h, max(0, w - 64), w)

    # ------------------------------------------------------------------ reading
    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` as ``(h, w, C)`` of the slide dtype. The window must lie inside."""
        h, w = self.info.height, self.info.width
        if not (0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w):
            raise InvalidInput(f"The window y {y0}:{y1}, x {x0}:{x1} lies outside the {w}x{h} image.")
        index: list = []
        for ax in self._axes:
            if ax == "Y":
                index.append(slice(y0, y1))
            elif ax == "X":
                index.append(slice(x0, x1))
            elif ax == self._chan_axis:
                index.append(slice(None))
            else:
                index.append(0)
        try:
            block = np.asarray(self._array[tuple(index)])
        except Exception as exc:
            raise InvalidInput(f"'{self.path.name}' could not be decoded at y {y0}:{y1}, x {x0}:{x1} "
                               f"({_short(exc)}); the file is probably truncated or damaged.") from None
        kept = [a for a in self._axes if a in ("Y", "X") or a == self._chan_axis]
        if self._chan_axis:
            order = [kept.index("Y"), kept.index("X"), kept.index(self._chan_axis)]
            block = np.transpose(block, order)[..., self._channels]
        else:
            order = [kept.index("Y"), kept.index("X")]
            block = np.transpose(block, order)[..., None]
        return np.ascontiguousarray(block)

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()
            self._tf = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(path: str | Path, channel: int | None = None, max_pixels: float = 1e10) -> Slide:
    """Open a slide lazily (see module docstring)."""
    return Slide(path, channel=channel, max_pixels=max_pixels)


def probe(path: str | Path, channel: int | None = None, max_pixels: float = 1e10) -> SlideInfo:
    """Validate a slide (header, first and last rows) and return its metadata."""
    with open_slide(path, channel=channel, max_pixels=max_pixels) as slide:
        return slide.info


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
