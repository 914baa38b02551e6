"""Map library errors to gRPC status codes, in one place.

Every servicer method is wrapped with :func:`rpc_method`: a ``FosgateError`` becomes its status with
the error's own (user-facing) message; a storage failure (disk full, read-only data folder) becomes
RESOURCE_EXHAUSTED / FAILED_PRECONDITION with a sentence (``fosgate.oserrors``); any other exception
becomes INTERNAL with a generic sentence and an error id, while its text and traceback go to the server
log under that id only (exception text can hold server paths). The server process never dies from a request.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
import traceback

import grpc

from fosgate import errors
from fosgate.oserrors import translate

log = logging.getLogger("fosgate.rpc")

STATUS = [
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Precondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ChecksumMismatch, grpc.StatusCode.DATA_LOSS),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
]


def new_error_id() -> str:
    """A short id a user can quote and an administrator can find in the server log."""
    return f"err_{secrets.token_hex(4)}"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    exc = translate(exc) or exc
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, MemoryError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "The server ran out of memory for this request."
    error_id = new_error_id()
    log.error("internal error %s:\n%s", error_id, traceback.format_exc())
    return grpc.StatusCode.INTERNAL, (f"The server hit an unexpected error (error id {error_id}); it keeps running. "
                                      "Please report the error id to the server's administrator.")


def _abort(context: grpc.ServicerContext, exc: BaseException):
    code, message = status_for(exc)
    context.abort(code, message)


def rpc_method(fn):
    """Wrap a servicer method (unary or streaming response) with the error mapping."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(self, request, context):
            try:
                yield from fn(self, request, context)
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, grpc.RpcError) or _is_abort(exc):
                    raise
                _abort(context, exc)

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, grpc.RpcError) or _is_abort(exc):
                raise
            _abort(context, exc)

    return wrapper


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises a bare Exception subclass private to grpc; let it through
    return type(exc).__module__.startswith("grpc")
