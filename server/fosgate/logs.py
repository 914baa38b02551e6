"""Where log lines go: the terminal keeps fosgate's own messages, the libraries write to the server log.

``setup_logging`` is called once per command by the CLI (``fosgate.cli.main``).

Invariants
- The terminal (stderr) shows records of the ``fosgate`` loggers only: WARNING and above, INFO with
  ``-v``; the lines are plain (``fosgate: message``), without timestamps or logger names. Progress bars
  (tqdm) and results are written by the commands themselves, not through logging.
- With a log file (``fosgate serve`` and ``fosgate demo``: ``<data>/server.log``, rotating at 5 MB,
  3 old files kept; when it cannot be opened, e.g. on a read-only data folder, the server still starts
  and says so on the terminal, which then also keeps library warnings) every record goes there: fosgate's at DEBUG, the libraries' (Dask / distributed,
  TensorFlow, absl, Keras, gRPC, ...) at INFO, and Python warnings (``logging.captureWarnings``).
  Without one (client commands), library records of WARNING and above still reach the terminal, so
  nothing important is lost; client commands import neither Dask nor TensorFlow.
- Libraries that attach their own terminal handlers (distributed does, on import) are stripped of them
  and propagate to the root instead (``route_library_logs``; call it again after importing such a
  library lazily).
- TensorFlow's C++ INFO and WARNING lines are switched off before TensorFlow is imported
  (``TF_CPP_MIN_LOG_LEVEL=2``); its errors still reach stderr. Some builds print C++ lines at import that
  this does not silence (absl messages written before ``absl::InitializeLog``, e.g. the oneDNN notice on
  AVX-512 CPUs), so commands with a log file import TensorFlow once at start-up with the process's stderr
  (file descriptor 2) pointed at the log file (``import_tensorflow_quietly``), before any thread starts.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from pathlib import Path

OWN = "fosgate"
LIBRARIES = ("distributed", "dask", "tornado", "bokeh", "tensorflow", "absl", "keras", "h5py", "grpc", "jax",
             "matplotlib", "PIL", "asyncio", "py.warnings", "numexpr", "urllib3", "fsspec", "zarr", "numcodecs")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 3

_state: dict[str, object] = {"configured": False, "log_file": None}


class _TerminalFilter(logging.Filter):
    """fosgate's own records at the terminal level; library records only when nothing else keeps them."""

    def __init__(self, own_level: int, libraries_to_terminal: bool):
        super().__init__()
        self.own_level = own_level
        self.libraries = libraries_to_terminal

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == OWN or record.name.startswith(OWN + "."):
            return record.levelno >= self.own_level
        return self.libraries and record.levelno >= logging.WARNING


class _TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        prefix = "fosgate: " if record.levelno < logging.WARNING else f"fosgate: {record.levelname.lower()}: "
        return prefix + text


def setup_logging(verbose: bool = False, log_file: str | os.PathLike | None = None) -> Path | None:
    """Configure the root logger for a CLI command (see the module docstring); returns the log file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_fosgate", False):
            root.removeHandler(h)
            h.close()
    terminal = logging.StreamHandler(sys.stderr)
    terminal.addFilter(_TerminalFilter(logging.INFO if verbose else logging.WARNING, log_file is None))
    terminal.setFormatter(_TerminalFormatter())
    terminal._fosgate = True  # type: ignore[attr-defined]
    root.addHandler(terminal)
    path = None
    unwritable = None
    if log_file is not None:
        path = Path(log_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                      encoding="utf-8")
        except OSError as e:  # a read-only or full data folder: serve anyway (health says NOT_SERVING)
            unwritable, path = e, None
            terminal.filters[0].libraries = True  # type: ignore[attr-defined]
    if path is not None:
        fh.setFormatter(logging.Formatter(LOG_FORMAT))
        fh.setLevel(logging.DEBUG)
        fh._fosgate = True  # type: ignore[attr-defined]
        root.addHandler(fh)
        logging.captureWarnings(True)
    root.setLevel(logging.INFO)
    logging.getLogger(OWN).setLevel(logging.DEBUG if log_file is not None or verbose else logging.INFO)
    _state.update(configured=True, log_file=path)
    if log_file is not None:  # a server command: it will run TensorFlow
        import_tensorflow_quietly(path)
    route_library_logs()
    if unwritable is not None:
        logging.getLogger(OWN).warning("cannot write the server log %s (%s); logging to the terminal only",
                                       log_file, unwritable.strerror or unwritable)
    return path


def import_tensorflow_quietly(log_file: Path | None) -> None:
    """Import TensorFlow with file descriptor 2 pointed at ``log_file`` (``/dev/null`` when None), so that
    the C++ lines some builds print at import go to the server log, not to the user's terminal. Call it
    before starting threads (the redirection is process-wide while it lasts). A missing TensorFlow is left
    for the code that needs it to report."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_file if log_file is not None else os.devnull, "ab") as target:
            os.dup2(target.fileno(), 2)
            with contextlib.suppress(ImportError):
                import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def route_library_logs() -> None:
    """Strip terminal handlers that libraries attached to their own loggers and let their records
    propagate to the root (the server log). Harmless before ``setup_logging`` (does nothing then)."""
    if not _state["configured"]:
        return
    manager = logging.Logger.manager
    names = [n for n in list(manager.loggerDict) if n.split(".")[0] in LIBRARIES] + list(LIBRARIES)
    for name in names:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.propagate = True
        if name.split(".")[0] == "distributed" and logger.level and logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


def configured() -> bool:
    """True once a CLI command has set logging up (libraries may then log freely: the root routes them)."""
    return bool(_state["configured"])


def log_file() -> Path | None:
    return _state["log_file"]  # type: ignore[return-value]
