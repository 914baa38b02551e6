"""Lazy slide access: TIFF / OME-TIFF / BigTIFF through tifffile's zarr interface, PNG / JPEG via Pillow.

Invariants
- ``Slide.read(y0, y1, x0, x1)`` returns a ``(y1 - y0, x1 - x0, C)`` array of the slide's own dtype
  (uint8 or uint16) and reads only the chunks (tiles or strips) that overlap the window: the whole
  slide is never loaded, whatever its size (PNG/JPEG cannot be read partially and are capped).
- ``C`` is 1 for grey images and for a chosen channel, 3 for RGB(A, alpha dropped) images.
  Other multi-channel images (CYX, ...) need a channel choice; channel 0 is the default.
- Axes other than Y, X and the channel axis (Z, T, ...) are read at index 0.
- Bad files raise :class:`fosgate.errors.InvalidInput` (or ``TooLarge`` for absurd dimensions) with a
  message that says what is wrong and what to do, never a library traceback. Messages name the file by
  the user's name (``name=``), never by a server path or a temporary name.
- Decompression bombs: no single read decodes more than ``max_decode_bytes`` (default
  :data:`MAX_DECODE_BYTES`). A TIFF whose strips or tiles decode to more than that is refused with
  ``TooLarge`` when it is opened, before anything is decoded; uncompressed contiguous TIFFs (ImageJ's
  single strip) are memory-mapped instead, so only the window is read. PNG/JPEG are decoded whole, so
  their whole decoded size is bounded the same way (checked from the header, before decoding).
- PNG chunk checksums (CRC) are verified before decoding: a damaged PNG is ``InvalidInput``.
- Large PNG/JPEG (above :data:`PIL_CACHE_BYTES` decoded) are decoded once into a tiled TIFF in the
  cache folder (``cache_dir=``, or :func:`configure_cache`) and read from it lazily afterwards, never
  decoded again per window.
- ``allowed=``: the file is opened through :func:`fosgate.safeopen.open_inside`, so a file replaced by a
  symlink pointing elsewhere is refused at every open.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fosgate.errors import InvalidInput, TooLarge, invalid_input_on_error

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_MAX_PIXELS = 400_000_000  # PNG/JPEG are decoded whole: above this use a tiled (Big)TIFF
#: most bytes one read may decode (a TIFF strip or tile, a whole PNG/JPEG)
MAX_DECODE_BYTES = 256 << 20
#: PNG/JPEG decoding to more than this are cached as a tiled TIFF (when a cache folder is known)
PIL_CACHE_BYTES = 16 << 20
# bytes per pixel Pillow uses while decoding, per mode (RGB is stored as 4 bytes)
_PIL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "LA": 4, "RGB": 4, "RGBA": 4,
              "CMYK": 4, "YCbCr": 4, "I": 4, "F": 4}

_CACHE_DIR: Path | None = None

CONVERT_HINT = ("Convert it to a tiled (OME-)TIFF, which fosgate reads piece by piece, e.g. "
                "`bfconvert -tilex 512 -tiley 512 -compression LZW IN OUT.ome.tif`, "
                "`vips tiffsave IN OUT.tif --tile --tile-width 512 --tile-height 512 --compression deflate "
                "--bigtiff`, or in Python `tifffile.imwrite('out.ome.tif', image, tile=(512, 512), "
                "compression='zlib', bigtiff=True)`.")


def configure_cache(directory: str | Path | None) -> None:
    """Where PNG/JPEG slides are cached as tiled TIFF when ``open_slide`` is not told (the server's data folder)."""
    global _CACHE_DIR
    _CACHE_DIR = Path(directory) if directory else None


def cache_name(st: os.stat_result) -> str:
    """The cache file name of a PNG/JPEG with this ``stat``: its identity (device, inode, size, mtime), which a
    rename keeps and any rewrite changes."""
    key = hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return f"{key}.tif"


def _mib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


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
    except Exception:  # noqa: BLE001 - metadata is a nicety: never fail a slide over it
        return 0.0
    return 0.0


class Slide:
    """An open slide; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, channel: int | None = None, max_pixels: float = 1e10, *,
                 name: str = "", max_decode_bytes: int = MAX_DECODE_BYTES, cache_dir: str | Path | None = None,
                 allowed: Sequence[Path] | None = None):
        self.path = Path(path)
        self.name = name or self.path.name  # the user's name for this file, for messages
        self.max_decode_bytes = int(max_decode_bytes)
        self._cache_dir = Path(cache_dir) if cache_dir else _CACHE_DIR
        self._tf = None
        self._fh = None
        self._array = None
        if allowed is not None:
            from fosgate.safeopen import open_inside

            self._fh, self.path = open_inside(self.path, allowed, self.name)
        elif not self.path.is_file():
            raise InvalidInput(f"There is no image file at '{self.name}'.")
        else:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - the slide's handle: closed by close()
        try:
            if os.fstat(self._fh.fileno()).st_size == 0:
                raise InvalidInput(f"'{self.name}' is empty (0 bytes).")
            low = self.name.lower() if self.name.lower().endswith(PIL_SUFFIXES) else self.path.name.lower()
            if low.endswith(PIL_SUFFIXES):
                self._open_pil(channel, max_pixels)
            else:
                self._open_tiff(channel, max_pixels)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _open_tiff(self, channel: int | None, max_pixels: float, source=None, fmt_override: str = "") -> None:
        import tifffile
        import zarr

        name = self.name
        with invalid_input_on_error(lambda why: f"'{name}' is not a readable TIFF file ({why}). "
                                    "Re-save it from Fiji (File › Save As › Tiff) or QuPath."):
            tf = tifffile.TiffFile(source if source is not None else self._fh)
        self._tf = tf
        with invalid_input_on_error(lambda why: f"'{name}' is a damaged TIFF file ({why}).", cleanup=tf.close):
            if not tf.series:
                raise InvalidInput(f"'{name}' contains no image.")
            series = tf.series[0]
            axes, shape, dtype = series.axes.upper(), tuple(series.shape), np.dtype(series.dtype)
            levels = len(series.levels)
            tiled = bool(series.keyframe.is_tiled)
            fmt = fmt_override or ("ome-tiff" if tf.is_ome else ("bigtiff" if tf.is_bigtiff else "tiff"))
            px = _pixel_size_um(tf)
            page = series.keyframe
            chunk_bytes = int(np.prod(page.chunks, dtype=np.float64)) * dtype.itemsize
            memmappable = page.compression == 1 and series.dataoffset is not None
        self._setup(axes, shape, dtype, channel, max_pixels, levels, px, fmt, tiled)
        if chunk_bytes > self.max_decode_bytes and not memmappable:
            what = "tiles" if tiled else "strips"
            raise TooLarge(f"'{name}' stores its pixels in compressed {what} of {_mib(chunk_bytes)} each when "
                           f"decoded ({page.chunks[-2] if len(page.chunks) > 1 else 1} rows of "
                           f"{self.info.width} px), above this server's limit of {_mib(self.max_decode_bytes)} "
                           f"decoded per read. {CONVERT_HINT}")
        with invalid_input_on_error(lambda why: f"'{name}' cannot be read lazily ({why}); re-save it as a tiled "
                                    "OME-TIFF (e.g. with bfconvert or QuPath)."):
            if memmappable and chunk_bytes > self.max_decode_bytes:
                # an uncompressed single strip (ImageJ): map it, so a window reads only its own bytes
                self._array = np.memmap(self._fh if source is None else source, dtype=np.dtype(tf.byteorder +
                                        dtype.char), mode="r", offset=series.dataoffset, shape=shape, order="C")
            else:
                self._array = zarr.open_array(series.aszarr(level=0), mode="r")
        self._check_readable()

    def _open_pil(self, channel: int | None, max_pixels: float) -> None:
        from PIL import Image

        name = self.name
        Image.MAX_IMAGE_PIXELS = None  # we apply our own limits below, before decoding
        fh = self._fh
        with invalid_input_on_error(lambda why: f"'{name}' is a damaged or unreadable PNG/JPEG image ({why})."):
            fh.seek(0)
            with Image.open(fh) as im:
                w, h = im.size
                fmt = (im.format or "").lower()
                mode = im.mode
                if fmt == "png":
                    im.verify()  # every chunk's CRC, before anything is decoded
        decoded = w * h * _PIL_BYTES.get(mode, 4)
        if w * h > min(max_pixels, PIL_MAX_PIXELS) or decoded > self.max_decode_bytes:
            raise TooLarge(f"'{name}' is a {w}x{h} px ({w * h / 1e6:.0f} megapixels) {fmt.upper() or 'PNG/JPEG'} "
                           f"image; it can only be decoded whole, which would take {_mib(decoded)} of memory, above this server's limit of "
                           f"{_mib(self.max_decode_bytes)} per read. {CONVERT_HINT}")
        kind = "jpeg" if "jp" in fmt else "png"
        cache = self._cache_path() if decoded > PIL_CACHE_BYTES and self._cache_dir is not None else None
        if cache is not None and cache.is_file():
            self._open_cached(cache, channel, max_pixels, kind)
            return
        with invalid_input_on_error(lambda why: f"'{name}' is not a readable PNG/JPEG image ({why})."):
            fh.seek(0)
            with Image.open(fh) as im:
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
        axes = "YXS" if arr.ndim == 3 else "YX"
        self._setup(axes, arr.shape, arr.dtype, channel, max_pixels, 1, 0.0, kind, False)
        if cache is not None and self._write_cache(arr, cache):
            del arr
            self._open_cached(cache, channel, max_pixels, kind)
            return
        self._array = arr

    def _cache_path(self) -> Path:
        """The tiled-TIFF cache of this PNG/JPEG: keyed by the file's identity (device, inode, size, mtime),
        which a rename keeps and any rewrite changes."""
        return self._cache_dir / cache_name(os.fstat(self._fh.fileno()))

    def _write_cache(self, arr: np.ndarray, cache: Path) -> bool:
        import tifffile

        tmp = cache.with_name(f".{secrets.token_hex(6)}.part")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp, arr, tile=(256, 256), compression="zlib", compressionargs={"level": 1},
                             photometric="rgb" if arr.ndim == 3 else "minisblack", bigtiff=arr.nbytes > 2**31)
            os.replace(tmp, cache)
            return True
        except OSError as exc:  # a full disk only costs speed: keep the decoded image in memory
            log.warning("could not cache a decoded PNG/JPEG as tiled TIFF: %s", exc)
            tmp.unlink(missing_ok=True)
            return False

    def _open_cached(self, cache: Path, channel: int | None, max_pixels: float, kind: str) -> None:
        self._fh.close()
        self._fh = open(cache, "rb")  # noqa: SIM115 - the slide's handle: closed by close()
        self.path = cache  # workers that re-open the slide by path read the cache too
        self._open_tiff(channel, max_pixels, fmt_override=kind)
        self.info.tiled = False

    def _setup(self, axes: str, shape: tuple[int, ...], dtype: np.dtype, channel: int | None, max_pixels: float,
               levels: int, px: float, fmt: str, tiled: bool) -> None:
        name = self.name
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
        with invalid_input_on_error(lambda why: f"'{self.name}' could not be decoded at y {y0}:{y1}, x {x0}:{x1} "
                                    f"({why}); the file is probably truncated or damaged."):
            block = np.asarray(self._array[tuple(index)])
            if not block.dtype.isnative:  # a memory-mapped big-endian TIFF
                block = block.astype(block.dtype.newbyteorder("="))
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
        self._array = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(path: str | Path, channel: int | None = None, max_pixels: float = 1e10, **kw) -> Slide:
    """Open a slide lazily (see module docstring; ``kw``: ``name``, ``max_decode_bytes``, ``cache_dir``,
    ``allowed``)."""
    return Slide(path, channel=channel, max_pixels=max_pixels, **kw)


def probe(path: str | Path, channel: int | None = None, max_pixels: float = 1e10, **kw) -> SlideInfo:
    """Validate a slide (header, first and last rows) and return its metadata."""
    with open_slide(path, channel=channel, max_pixels=max_pixels, **kw) as slide:
        return slide.info


HEADER_BYTES = 64 << 10  # how much of an upload is looked at before anything is written to disk


def sniff(prefix: bytes) -> str:
    """The image format the first bytes announce: 'tiff', 'png', 'jpeg', or '' for none of them."""
    if prefix[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if prefix[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if prefix[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return ""


def check_header(prefix: bytes, name: str, max_pixels: float = 1e10,
                 max_decode_bytes: int = MAX_DECODE_BYTES) -> None:
    """Refuse an upload from its first bytes (at least :data:`HEADER_BYTES` of them, or the whole file):
    ``InvalidInput`` when they are no image header or not the format the name says, ``TooLarge`` when the
    header already shows a decompression bomb (PNG/JPEG dimensions; TIFF strips or tiles, when the first
    directory lies in ``prefix``). Anything this cannot tell is checked again on the complete file."""
    import io

    kind = sniff(prefix)
    low = name.lower()
    expected = "png" if low.endswith(".png") else ("jpeg" if low.endswith((".jpg", ".jpeg")) else "tiff")
    if not kind:
        raise InvalidInput(f"'{name}' does not start like a TIFF, PNG or JPEG file; it is not an image fosgate "
                           "can read (check that you picked the image itself, not a project or archive file).")
    if kind != expected:
        raise InvalidInput(f"'{name}' is named like a {expected.upper()} file but holds a {kind.upper()} image; "
                           f"rename it with the right extension.")
    if kind in ("png", "jpeg"):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(prefix)) as im:
                w, h, mode = im.size[0], im.size[1], im.mode
        except Exception:  # noqa: BLE001 - header beyond the prefix (large EXIF): checked on the whole file
            return
        decoded = w * h * _PIL_BYTES.get(mode, 4)
        if w * h > min(max_pixels, PIL_MAX_PIXELS) or decoded > max_decode_bytes:
            raise TooLarge(f"'{name}' is a {w}x{h} px ({w * h / 1e6:.0f} megapixels) {kind.upper()} image; it can "
                           f"only be decoded whole, which would take {_mib(decoded)} of memory, above this "
                           f"server's limit of {_mib(max_decode_bytes)} per read. {CONVERT_HINT}")
        return
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(prefix)) as tf:
            series = tf.series[0]
            page = series.keyframe
            dtype = np.dtype(series.dtype)
            chunk_bytes = int(np.prod(page.chunks, dtype=np.float64)) * dtype.itemsize
            compressed = page.compression != 1
            h = series.shape[series.axes.upper().index("Y")]
            w = series.shape[series.axes.upper().index("X")]
    except Exception:  # noqa: BLE001 - first directory beyond the prefix: checked on the whole file
        return
    if h * w > max_pixels:
        raise TooLarge(f"'{name}' is {w}x{h} px ({h * w / 1e9:.1f} gigapixels), above this server's "
                       f"limit of {max_pixels / 1e9:.1f} gigapixels.")
    if compressed and chunk_bytes > max_decode_bytes:
        raise TooLarge(f"'{name}' stores its pixels in compressed {'tiles' if page.is_tiled else 'strips'} of "
                       f"{_mib(chunk_bytes)} each when decoded, above this server's limit of "
                       f"{_mib(max_decode_bytes)} decoded per read. {CONVERT_HINT}")
