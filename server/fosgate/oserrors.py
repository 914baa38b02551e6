"""Operating-system and SQLite failures of the data folder, as sentences a user can act on.

Invariants
- :func:`translate` turns an ``OSError`` (ENOSPC, EDQUOT, EFBIG, EACCES, EPERM, EROFS) or a
  ``sqlite3`` error (SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR) into a
  :class:`fosgate.errors.StorageFull` or :class:`fosgate.errors.StorageUnwritable`; anything else
  gives ``None`` (the caller treats it as an unexpected error).
- The sentences never contain a server path or a temporary file name (``OSError.filename`` is
  deliberately not shown): they say what happened and what the user or the administrator can do.
- No gRPC here; ``fosgate.rpc.errors`` and the job runner map the results to status codes / job messages.
"""

from __future__ import annotations

import errno
import sqlite3

from fosgate.errors import FosgateError, StorageFull, StorageUnwritable

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

# https://www.sqlite.org/rescode.html (primary codes; extended codes keep them in the low byte)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 10, 13, 14

FULL_SENTENCE = ("The server's disk is full, so nothing more can be stored right now. Delete slides, jobs or "
                 "outputs you no longer need (fosgate jobs / DeleteSlide), or ask the administrator to free space "
                 "in the data folder, then try again.")
UNWRITABLE_SENTENCE = ("The server's data folder cannot be written (it is read-only or the server lacks "
                       "permission). Ask the administrator to make the data folder writable; reading what is "
                       "already stored still works.")


def translate(exc: BaseException) -> FosgateError | None:
    """The user-facing error for a storage failure, or ``None`` if ``exc`` is not one."""
    if isinstance(exc, StorageFull | StorageUnwritable):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in FULL_ERRNOS:
            return StorageFull(FULL_SENTENCE)
        if exc.errno in UNWRITABLE_ERRNOS:
            return StorageUnwritable(UNWRITABLE_SENTENCE)
        return None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(exc).lower()
        if primary == _SQLITE_FULL or "disk is full" in text:
            return StorageFull(FULL_SENTENCE)
        if primary in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or "readonly" in text or "read-only" in text:
            return StorageUnwritable(UNWRITABLE_SENTENCE)
        if primary == _SQLITE_IOERR or "disk i/o error" in text:
            # SQLite reports a full or read-only disk during a write as a generic I/O error
            return StorageUnwritable("The server could not write to its data folder (disk I/O error); the disk "
                                     "may be full or read-only. Ask the administrator to check the data folder.")
    return None
