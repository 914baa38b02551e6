"""File names on the client side: which files are images, their stems, and the name an output gets.

The server's ``fosgate.names`` re-exports these (the server depends on the client distribution), so the
stem a client asks for is the stem the server writes; the server adds the refusing ``check_stem`` and
``inside``.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_CHARS = 120
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".png", ".jpeg", ".jpg")


def image_suffix(name: str) -> str:
    """The supported image suffix of ``name`` (e.g. ``.ome.tif``), or '' if it has none."""
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[-len(suffix):]
    return ""


def stem_of(name: str) -> str:
    """``name`` without its image suffix."""
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def safe_name(name: str, default: str = "slide.tif") -> str:
    """A file name safe to store: the last path component, odd characters replaced, length capped
    (the image suffix is kept when the name is shortened)."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = unicodedata.normalize("NFC", base)
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    if len(base) > MAX_NAME_CHARS:
        suffix = image_suffix(base)
        base = base[: MAX_NAME_CHARS - len(suffix)] + suffix
    return base or default
