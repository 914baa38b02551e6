"""The data folder as a resource: quota, writability (for health), and clean-up after a crash.

Invariants
- :meth:`DataFolder.check_quota` refuses (``StorageFull`` -> RESOURCE_EXHAUSTED) any write that would take
  the data folder above ``max_bytes`` (0 = no quota); usage is measured from the files themselves, so it
  is right after a restart, a crash or a manual clean-up.
- :meth:`DataFolder.writable` really creates, writes and removes a small file in ``tmp/``: it is false on
  a full, read-only or permission-less data folder, and true again as soon as the folder can be written.
- The data folder keeps a small reserve file (:data:`RESERVE_BYTES`, ``.reserve``, not counted in the
  quota) made while there is space; when the disk is full, deleting data first releases it, so that the
  database can record the deletion. It is made again once the disk has room.
- :func:`cleanup_orphans` runs at start-up, before the server accepts calls (so nothing is being
  written): it removes what a killed process left behind and no row points to (partial uploads and
  temporary files in ``tmp/``, label and proposal files without a row, slide folders without a row,
  ``.work`` folders and ``.part`` files in job folders, ``.part`` model folders, cached PNG/JPEG decodes
  of slides that are gone or were rewritten). Files a row points to
  are never touched. It never raises for a read-only or full disk (it logs and goes on).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from fosgate.errors import StorageFull

log = logging.getLogger(__name__)

RESERVE_BYTES = 2 << 20
RESERVE_NAME = ".reserve"


def tree_bytes(root: Path) -> int:
    """Total size of the regular files under ``root`` (symlinks not followed)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False) and entry.name != RESERVE_NAME:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class DataFolder:
    """Quota and health of one data folder."""

    def __init__(self, root: Path, max_bytes: int = 0):
        self.root = Path(root)
        self.max_bytes = int(max_bytes or 0)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._writable = True

    def used_bytes(self) -> int:
        return tree_bytes(self.root)

    def check_quota(self, extra: int = 0, used: int | None = None) -> int:
        """Raise ``StorageFull`` if storing ``extra`` more bytes would exceed the quota; returns the bytes in use
        (0 when there is no quota, which is then not measured)."""
        if not self.max_bytes:
            return 0
        used = self.used_bytes() if used is None else used
        if used + max(0, extra) > self.max_bytes:
            raise StorageFull(
                f"The server's data folder has reached its quota: {used / 1e9:.2f} GB of {self.max_bytes / 1e9:.2f} GB "
                f"are in use{f' and this needs {extra / 1e9:.2f} GB more' if extra else ''}. Delete slides or "
                "jobs you no longer need, or ask the administrator to raise the quota (fosgate serve "
                "--max-data-gb).")
        return used

    def ensure_reserve(self) -> None:
        """Make the reserve file if it is missing and the disk has plenty of room for it."""
        path = self.root / RESERVE_NAME
        try:
            if path.is_file() and path.stat().st_size == RESERVE_BYTES:
                return
            st = os.statvfs(self.root)
            if st.f_bavail * st.f_frsize < 4 * RESERVE_BYTES:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("no reserve file: %s", exc)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def release_reserve(self) -> bool:
        """Free the reserve (disk full, a deletion must be recorded); True if there was one."""
        try:
            (self.root / RESERVE_NAME).unlink()
            log.warning("disk full: released the %d-byte reserve so that the database can record changes",
                        RESERVE_BYTES)
            return True
        except OSError:
            return False

    def writable(self, max_age: float = 0.0) -> bool:
        """Whether a small file can be written in the data folder now (cached for ``max_age`` s)."""
        with self._lock:
            if max_age and time.monotonic() - self._checked < max_age:
                return self._writable
            probe = self.root / "tmp" / f".probe-{secrets.token_hex(4)}"
            ok = True
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, b"\0" * 4096)  # no fsync: health must stay cheap; a full disk fails the write
                finally:
                    os.close(fd)
            except OSError:
                ok = False
            finally:
                with contextlib.suppress(OSError):
                    probe.unlink(missing_ok=True)
            self._writable, self._checked = ok, time.monotonic()
            return ok


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except OSError as exc:
        log.warning("start-up clean-up could not remove %s: %s", path, exc)
        return False


def cleanup_orphans(store) -> dict[str, int]:
    """Remove what a killed server left behind (see module docstring); returns counts per kind."""
    root = Path(store.root)
    counts = {"tmp": 0, "labels": 0, "proposals": 0, "slides": 0, "work": 0, "models": 0}
    try:
        label_ids = {r["id"] for r in store._query("SELECT id FROM labels")}
        proposal_ids = {r["id"] for r in store._query("SELECT id FROM proposals")}
        slide_ids = {r["id"] for r in store._query("SELECT id FROM slides")}
    except Exception as exc:  # noqa: BLE001 - unreadable database: touch nothing
        log.warning("start-up clean-up skipped: %s", exc)
        return counts
    for p in _children(root / "tmp"):
        counts["tmp"] += _remove(p)
    for kind, ids in (("labels", label_ids), ("proposals", proposal_ids)):
        for p in _children(root / kind):
            if p.is_file() and p.suffix == ".tif" and p.stem not in ids:
                counts[kind] += _remove(p)
    for p in _children(root / "slides"):
        if p.is_dir() and p.name not in slide_ids:
            counts["slides"] += _remove(p)
    for job in _children(root / "jobs"):
        for p in _children(job):
            if (p.name.endswith(".work") and p.is_dir()) or p.name.endswith(".part"):
                counts["work"] += _remove(p)
    for p in _children(root / "models"):
        if p.name.endswith(".part"):
            counts["models"] += _remove(p)
    counts["cache"] = _cleanup_cache(root / "cache", store._query("SELECT path FROM slides"))
    if any(counts.values()):
        log.info("start-up clean-up removed %s", ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return counts


def _cleanup_cache(cache: Path, rows) -> int:
    """Remove cached decodes of PNG/JPEG slides that are gone or were rewritten, and half-written ones."""
    from fosgate.core.slides import PIL_SUFFIXES, cache_name

    children = _children(cache)
    if not children:
        return 0
    wanted = set()
    for r in rows:
        if r["path"].lower().endswith(PIL_SUFFIXES):
            try:
                wanted.add(cache_name(os.stat(r["path"])))
            except OSError:
                continue
    return sum(_remove(p) for p in children if p.name not in wanted)


def remove_partials(job_dir: Path) -> int:
    """Remove a failed or cancelled job's half-written files (``.part``) and work folders (``.work``)."""
    return sum(_remove(p) for p in _children(job_dir)
               if (p.name.endswith(".work") and p.is_dir()) or p.name.endswith(".part"))


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []
