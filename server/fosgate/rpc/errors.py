"""Map library errors to gRPC status codes, in one place.

Every servicer method is wrapped with :func:`rpc_method`: a ``FosgateError`` becomes its status with
the error's own (user-facing) message; any other exception becomes INTERNAL with a short message
and a logged traceback. The server process never dies from a request.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback

import grpc

from fosgate import errors

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


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, MemoryError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "The server ran out of memory for this request."
    log.error("internal error:\n%s", traceback.format_exc())
    return grpc.StatusCode.INTERNAL, f"Internal server error ({type(exc).__name__}); the server keeps running."


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
