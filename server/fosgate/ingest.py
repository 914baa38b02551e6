"""Slide ingest and path security: uploads, registration of server-side files, opening and deleting slides.

Invariants
- An uploaded file is validated (decoded header, first and last rows) and checked against the declared
  size and SHA-256 before its row exists; its stored name has passed :func:`fosgate.names.safe_name`.
- A registered path is accepted only if it resolves (symlinks followed) to a file inside one of the
  configured roots; ``..`` is refused outright.
- A slide that labels use is never deleted (labels are the lab's work); proposals and clusterings of a
  deleted slide go with it, in the same transaction; a slide that a queued or running job reads is kept
  until the job ends.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fosgate.config import ServerConfig
from fosgate.errors import ChecksumMismatch, Forbidden, InvalidInput, NotFound, TooLarge
from fosgate.names import image_suffix, safe_name
from fosgate.specs import check_id
from fosgate.storage import DataFolder
from fosgate.store.db import SlideRow, Store, fsync_replace, new_id, now

ROLES = ("image", "mask")


def check_suffix(name: str) -> None:
    if not image_suffix(name):
        raise InvalidInput(
            f"'{name}' does not look like a supported image; fosgate reads TIFF, OME-TIFF, BigTIFF, PNG and JPEG "
            "files (.tif, .tiff, .ome.tif, .btf, .png, .jpg)."
        )


class SlideIngest:
    """Slides in and out of the store."""

    def __init__(self, config: ServerConfig, store: Store, data: DataFolder | None = None):
        self.config = config
        self.store = store
        self.data = data or DataFolder(store.root, config.max_data_bytes)

    def _slide_row(self, slide_id: str, name: str, role: str, path: Path, registered: bool,
                   channel: int | None, size: int, sha: str) -> SlideRow:
        from fosgate.core.slides import probe

        info = probe(path, channel=channel, max_pixels=self.config.max_pixels, **self._slide_options(name, registered))
        info_d = asdict(info)
        return SlideRow(slide_id, name, role, str(path), registered, channel, info_d, size, sha, now())

    def upload_slide(self, name: str, role: str, channel: int | None, declared_size: int,
                     declared_sha256: str, chunks: Iterable[bytes]) -> SlideRow:
        """Store streamed bytes as a slide. The file is validated (decoded header, first and last
        rows) before it is registered; a size or checksum mismatch rejects it."""
        if role not in ROLES:
            raise InvalidInput(f"Unknown slide role '{role}'.")
        if len(declared_sha256) > 128:
            raise InvalidInput("The declared SHA-256 is not a hex digest (64 characters).")
        name = safe_name(name)
        check_suffix(name)
        if declared_size > self.config.max_upload_bytes:
            raise TooLarge(f"'{name}' is {declared_size / 2**30:.1f} GiB; this server accepts uploads up to "
                           f"{self.config.max_upload_bytes / 2**30:.1f} GiB. Register the file by path instead.")
        used = self.data.check_quota(declared_size)
        tmp_dir = self.store.tmp_path()  # tmp/<random>/<name>: libraries' messages see the user's own file name
        tmp_dir.mkdir()
        tmp = tmp_dir / name
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in self._checked_chunks(name, chunks):
                    size += len(chunk)
                    if size > self.config.max_upload_bytes:
                        raise TooLarge(f"The upload of '{name}' exceeds this server's limit of "
                                       f"{self.config.max_upload_bytes / 2**30:.1f} GiB.")
                    if self.data.max_bytes and used + size > self.data.max_bytes:
                        self.data.check_quota(size, used)
                    h.update(chunk)
                    fh.write(chunk)
            if size == 0:
                raise InvalidInput(f"'{name}' is empty (0 bytes).")
            if declared_size and declared_size != size:
                raise ChecksumMismatch(f"The upload of '{name}' was cut short: {size} of {declared_size} bytes arrived.")
            digest = h.hexdigest()
            if declared_sha256 and declared_sha256.lower() != digest:
                raise ChecksumMismatch(f"The upload of '{name}' arrived damaged (SHA-256 mismatch); please send it again.")
            slide_id = new_id("sl")
            final = self.store.slide_dir(slide_id) / name
            row = self._slide_row(slide_id, name, role, tmp, False, channel, size, digest)
            fsync_replace(tmp, final)
            row.path = str(final)
            return self.store.add_slide(row)
        finally:
            tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                tmp_dir.rmdir()

    def _checked_chunks(self, name: str, chunks: Iterable[bytes]) -> Iterable[bytes]:
        """The upload's chunks, after its first bytes passed :func:`fosgate.core.slides.check_header`: junk or a
        declared bomb is refused before anything is written to disk."""
        from fosgate.core.slides import HEADER_BYTES, check_header

        head: list[bytes] = []
        seen = 0
        it = iter(chunks)
        for chunk in it:
            head.append(chunk)
            seen += len(chunk)
            if seen >= HEADER_BYTES:
                break
        if seen:
            check_header(b"".join(head), name, self.config.max_pixels, self.config.max_decode_bytes)
        yield from head
        yield from it

    def _slide_options(self, name: str, registered: bool) -> dict[str, Any]:
        """How every slide is opened: by the user's name in messages, with the decode bound and the PNG/JPEG
        cache, and only if the file (re-checked at every open) lies in the roots or the data folder."""
        return {"name": name, "max_decode_bytes": self.config.max_decode_bytes,
                "cache_dir": self.store.root / "cache",
                "allowed": self.config.roots if registered else [self.store.root]}

    def resolve_registered_path(self, path: str) -> Path:
        """A server-side path, accepted only if it resolves (symlinks followed) inside a root."""
        if not self.config.roots:
            raise Forbidden("This server has no folders configured for registration (start it with --root DIR).")
        if not path:
            raise InvalidInput("No path given.")
        if "\x00" in path or len(path) > 4096:
            raise InvalidInput("That is not a valid file path.")
        p = Path(path)
        if ".." in p.parts:
            raise Forbidden(f"'{path}' contains '..'; give a path inside the server's image folders.")
        try:
            resolved = p.resolve()
        except (OSError, RuntimeError):
            raise InvalidInput(f"The path '{path}' cannot be resolved on the server.") from None
        if not any(resolved == r or r in resolved.parents for r in self.config.roots):
            raise Forbidden(f"'{path}' is outside the folders this server may read (the folders its "
                            "administrator gave with --root); ask them where to put images for registration.")
        try:
            is_file = resolved.is_file()
        except OSError:  # e.g. a component longer than the file system allows
            raise InvalidInput(f"The path '{path}' cannot be read on the server.") from None
        if not is_file:
            raise NotFound(f"There is no file '{path}' on the server.")
        return resolved

    def register_slide(self, path: str, role: str, channel: int | None, name: str = "") -> SlideRow:
        if role not in ROLES:
            raise InvalidInput(f"Unknown slide role '{role}'.")
        resolved = self.resolve_registered_path(path)
        check_suffix(resolved.name)
        slide_id = new_id("sl")
        row = self._slide_row(slide_id, safe_name(name or resolved.name), role, resolved, True, channel,
                              resolved.stat().st_size, "")
        return self.store.add_slide(row)

    def open_slide(self, row: SlideRow):
        from fosgate.core.slides import open_slide

        return open_slide(row.path, channel=row.channel, max_pixels=self.config.max_pixels,
                          **self._slide_options(row.name, row.registered))

    def delete_slide(self, slide_id: str) -> SlideRow:
        """Forget a slide and its uploaded file, with its proposals and clusterings (see the invariants)."""
        check_id(slide_id, "slide")
        from fosgate.errors import StorageFull
        from fosgate.oserrors import translate

        try:
            return self.store.delete_slide(slide_id)
        except Exception as exc:
            # a full disk: release the reserve (or else remove the uploaded file) so the database can record it
            if not isinstance(translate(exc), StorageFull):
                raise
            if not self.data.release_reserve():
                row = self.store.get_slide(slide_id)
                if not row.registered and not self.store.list_labels(slide_id):
                    import shutil

                    shutil.rmtree(self.store.slide_dir(slide_id), ignore_errors=True)
            return self.store.delete_slide(slide_id)
