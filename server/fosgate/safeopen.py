"""Open a file for reading only if it really lies inside given folders, checked on the open file itself.

Invariants
- :func:`open_inside` opens the path (the last component with ``O_NOFOLLOW``, so a symlink swapped in
  at the last moment is refused) and then checks where the *opened* file is (``/proc/self/fd`` on Linux,
  else the resolved path): a registered file that was later replaced by a symlink pointing outside the
  allowed folders is never read, whatever happened between registration and this open.
- The error names the file by the name the caller gives (the user's name), never by a server path.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from fosgate.errors import Forbidden, NotFound


def _within(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def open_inside(path: str | Path, folders: Sequence[Path], name: str = "") -> tuple[BinaryIO, Path]:
    """``(binary file object, real path)`` of ``path``, refused with ``Forbidden`` unless the opened file
    lies inside one of ``folders`` (symlinks resolved)."""
    path = Path(path)
    name = name or path.name
    real_folders = [Path(f).resolve() for f in folders]
    resolved = path.resolve()
    if not _within(resolved, real_folders):
        raise Forbidden(f"'{name}' now lies outside the folders this server may read (it was moved or replaced "
                        "by a link); register the file again from inside those folders.")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except FileNotFoundError:
        raise NotFound(f"The file '{name}' is no longer on the server.") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component became a symlink after we resolved it
            raise Forbidden(f"'{name}' was replaced by a link while being opened; it is not read.") from None
        raise
    try:
        proc = Path(f"/proc/self/fd/{fd}")
        real = Path(os.readlink(proc)) if proc.exists() else resolved
        if not _within(real, real_folders):
            raise Forbidden(f"'{name}' now lies outside the folders this server may read; it is not read.")
        raw = io.FileIO(fd, "r")  # closes fd when closed
        raw.name = str(real)  # libraries (tifffile) want a file name, not a descriptor number
        return io.BufferedReader(raw), real
    except BaseException:
        os.close(fd)
        raise
