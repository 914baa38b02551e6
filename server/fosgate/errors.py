"""Errors the library raises for bad input, each meant to be read by a biologist.

The gRPC layer maps each class to one status code; nothing below ``fosgate.rpc`` imports grpc.
"""

from __future__ import annotations


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
