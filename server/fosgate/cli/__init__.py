"""The command line moved to the light client distribution: ``fosgate_client.cli``.

This name stays for console scripts installed before the move (``fosgate = fosgate.cli:main``) and for
``python -m fosgate.cli``; every attribute is the client module's."""

import fosgate_client.cli as _cli
from fosgate_client.cli import build_parser, main

__all__ = ["build_parser", "main"]


def __getattr__(name: str):
    return getattr(_cli, name)
