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

# the plain-name helpers live in the light client (the server depends on it), so both sides agree by construction
from fosgate_client.names import IMAGE_SUFFIXES, MAX_NAME_CHARS, image_suffix, safe_name, stem_of

__all__ = ["IMAGE_SUFFIXES", "MAX_NAME_CHARS", "check_stem", "image_suffix", "inside", "safe_name", "stem_of"]

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
