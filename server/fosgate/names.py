"""Client-given names that become parts of file paths: one sanitiser, one length cap.

Invariants
- No string a client sends is joined to a server path before it has passed :func:`check_stem` (refuse)
  or :func:`safe_name` (sanitise). Both return a single path component: no separator, no NUL or
  control character, never ``.``/``..`` or a leading dot, at most :data:`MAX_NAME_CHARS` characters.
- :func:`inside` is the last line of defence: a path that does not resolve inside its base folder is
  refused, so even a bug upstream cannot make the server write outside the data folder.
- One list of supported image suffixes (:data:`IMAGE_SUFFIXES`), longest first, so ``.ome.tif`` wins
  over ``.tif``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from fosgate.errors import InvalidInput

MAX_NAME_CHARS = 120
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".png", ".jpeg", ".jpg")

# letters and digits of any script, and a few harmless punctuation marks
_STEM_OK = re.compile(r"^[\w][\w .+()\-]*$", re.UNICODE)


def check_stem(stem: str) -> str:
    """Return ``stem`` if it is a plain file-name stem, else raise ``InvalidInput`` with the reason.

    An empty stem is allowed (the caller then derives one from the slide's stored name)."""
    if not stem:
        return ""
    stem = unicodedata.normalize("NFC", stem)
    if len(stem) > MAX_NAME_CHARS:
        raise InvalidInput(f"The output name is {len(stem)} characters long; use at most {MAX_NAME_CHARS}.")
    if any(ch in stem for ch in "/\\") or "\x00" in stem or stem in (".", ".."):
        raise InvalidInput(f"The output name '{_show(stem)}' must be a plain file name without folders "
                           "('/', '\\' or '..'); outputs always go to the job's own folder.")
    if any(unicodedata.category(ch).startswith("C") for ch in stem):
        raise InvalidInput("The output name contains control characters; use letters, digits, '-', '_' or '.'.")
    if not _STEM_OK.match(stem) or stem.endswith((" ", ".")):
        raise InvalidInput(f"The output name '{_show(stem)}' may only hold letters, digits, spaces and "
                           "'.', '_', '-', '+', '(', ')', and must start with a letter or digit.")
    return stem


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


def inside(base: Path, *parts: str) -> Path:
    """``base / parts...``, refused (``InvalidInput``) unless it resolves inside ``base``."""
    base_r = Path(base).resolve()
    path = base_r.joinpath(*parts)
    resolved = path.resolve()
    if resolved != base_r and base_r not in resolved.parents:
        raise InvalidInput("That name would place a file outside the job's folder; use a plain file name.")
    return path


def _show(text: str, limit: int = 60) -> str:
    text = text.replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 3] + "..."
