"""Errors the library raises for bad input, each meant to be read by a biologist.

The gRPC layer maps each class to one status code; nothing below ``fosgate.rpc`` imports grpc.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class FosgateError(Exception):
    """Base class: ``str(err)`` is a complete sentence a user can act on."""


class InvalidInput(FosgateError, ValueError):
    """The image, mask or parameter cannot be used (maps to INVALID_ARGUMENT)."""


class NotFound(FosgateError, LookupError):
    """An id or file that does not exist (maps to NOT_FOUND)."""


class TooLarge(FosgateError):
    """Over a configured cap: upload size, image dimensions, message size (RESOURCE_EXHAUSTED)."""


class Forbidden(FosgateError, PermissionError):
    """A path outside the configured roots (maps to PERMISSION_DENIED)."""


class Precondition(FosgateError):
    """The request is valid but the state does not allow it (maps to FAILED_PRECONDITION)."""


class ChecksumMismatch(FosgateError):
    """Uploaded bytes differ from what the client declared (maps to DATA_LOSS)."""


class Cancelled(FosgateError):
    """A job was cancelled by its user; raised inside job code at a safe point."""


class StorageFull(TooLarge):
    """The data folder's disk (or quota) is full (maps to RESOURCE_EXHAUSTED)."""


class StorageUnwritable(Precondition):
    """The data folder cannot be written (read-only or no permission; maps to FAILED_PRECONDITION)."""


def short_reason(exc: BaseException) -> str:
    """A library's error as one line of at most 160 characters, any folder part of a path dropped (messages
    name files, never the server's folders); the exception's class name when it has no text."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = re.sub(r"(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\"]+)+[/\\]([^/\\\s'\"]+)", r"\1", text)
    return text[:160]


@contextmanager
def invalid_input_on_error(describe: Callable[[str], str], *,
                           cleanup: Callable[[], object] | None = None) -> Iterator[None]:
    """Around calls into third-party readers of a client's file (tifffile, Pillow, roifile, shapely, keras,
    torch), which raise any exception class on malformed input: inside the block, an error that is not a
    :class:`FosgateError` becomes ``InvalidInput(describe(short_reason(exc)))``, so the client gets
    INVALID_ARGUMENT and a sentence instead of INTERNAL; a ``FosgateError`` passes unchanged. ``cleanup``
    (e.g. closing the file) runs before either is raised."""
    try:
        yield
    except FosgateError:
        if cleanup is not None:
            cleanup()
        raise
    except Exception as exc:  # noqa: BLE001 - the one place a reader's arbitrary error becomes InvalidInput
        if cleanup is not None:
            cleanup()
        raise InvalidInput(describe(short_reason(exc))) from None
