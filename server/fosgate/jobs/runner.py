"""Background jobs with persisted state and progress events.

A job is a function ``fn(ctx: JobContext) -> str`` (it returns a result id, possibly empty) run on
a worker thread. Its state lives in the store (SQLite), so ``GetJob``/``ListJobs`` survive a
restart; live watchers wait on a condition variable that is notified on every change.

Invariants
- State moves queued -> running -> (succeeded | failed | cancelled) and never back.
- A job that raises ends ``failed`` with the exception's message (library errors are written for
  users; a full or read-only disk gets its sentence from ``fosgate.oserrors``; anything else gets a
  generic sentence with an error id, its text and traceback go to the server log only), never crashing
  the server.
- No job is left queued or running after its worker thread has ended: marking it running is inside
  the same ``try`` as the work, and a final state that cannot be written (disk full) is kept in memory,
  shown by ``get_job``/``watch`` and written by :meth:`JobRunner.flush_pending` once the disk allows
  (start-up marks any leftover as failed).
- ``cancel`` of a queued job ends it at once; of a running job it sets a flag that the job polls
  at safe points (``ctx.check_cancel()``), so files are never left half-registered.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fosgate.errors import Cancelled, FosgateError
from fosgate.oserrors import translate
from fosgate.store.db import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    ArtifactRow,
    JobRow,
    Store,
    new_id,
    now,
)

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".zip": "application/zip",
    ".geojson": "application/geo+json",
    ".csv": "text/csv",
    ".png": "image/png",
    ".json": "application/json",
}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class JobContext:
    """What a running job may do: report progress, check for cancellation, publish artifacts."""

    def __init__(self, runner: JobRunner, job_id: str):
        self._runner = runner
        self.job_id = job_id
        self.store = runner.store
        self.params: dict[str, Any] = runner.store.get_job(job_id).params
        self._metrics: dict[str, float] = {}
        self._last_write = 0.0

    @property
    def workdir(self) -> Path:
        return self.store.job_dir(self.job_id)

    def cancelled(self) -> bool:
        return self._runner.is_cancel_requested(self.job_id)

    def check_cancel(self) -> None:
        if self.cancelled():
            raise Cancelled("Cancelled by user.")

    def progress(self, fraction: float, message: str | None = None, force: bool = False,
                 **metrics: float) -> None:
        """Record progress (0..1), a message and numbers; throttled to ~5 writes/s unless forced."""
        self._metrics.update({k: float(v) for k, v in metrics.items()})
        t = time.monotonic()
        if not force and t - self._last_write < 0.2:
            return
        self._last_write = t
        fields: dict[str, Any] = {"progress": max(0.0, min(1.0, float(fraction))), "metrics": self._metrics}
        if message is not None:
            fields["message"] = message
        self.store.update_job(self.job_id, **fields)
        self._runner.notify()

    def add_artifact(self, path: Path, name: str | None = None) -> ArtifactRow:
        path = Path(path)
        name = name or path.name
        suffix = "".join(path.suffixes[-1:]).lower()
        media = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        row = ArtifactRow(new_id("ar"), self.job_id, name, str(path), path.stat().st_size, file_sha256(path), media)
        self.store.add_artifact(row)
        self._runner.notify()
        return row


JobFn = Callable[[JobContext], str]


class JobRunner:
    """Runs jobs on a small thread pool (heavy jobs use all cores themselves, so 1 worker is the
    default; more lets cheap jobs overlap)."""

    def __init__(self, store: Store, workers: int = 1, admit: Callable[[], None] | None = None):
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fosgate-job")
        self._cond = threading.Condition()
        self._version = 0
        self._cancel: set[str] = set()
        self._admit = admit  # raises (e.g. StorageFull) when no job may be queued now
        self._pending_final: dict[str, dict[str, Any]] = {}  # final states not yet written (disk full)
        # jobs a previous process left queued or running end failed; on a full or read-only disk the new
        # state is kept in memory (see _finish), so the server still starts and lets users delete data
        for job in store.list_jobs():
            if not job.final:
                self._finish(job.id, dict(state=JOB_FAILED, finished=now(),
                                          message="The server stopped before this job finished; please submit "
                                                  "it again."))

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> JobRow:
        if self._admit is not None:
            self._admit()
        job = self.store.add_job(kind, params)
        self._pool.submit(self._run, job.id, fn)
        self.notify()
        return job

    def _run(self, job_id: str, fn: JobFn) -> None:
        final: dict[str, Any]
        try:
            if self.is_cancel_requested(job_id) or self.store.get_job(job_id).final:
                return
            self.store.update_job(job_id, state=JOB_RUNNING, started=now(), message="Started.")
            self.notify()
            ctx = JobContext(self, job_id)
            result = fn(ctx) or ""
            final = dict(state=JOB_SUCCEEDED, progress=1.0, finished=now(), result_id=result, message="Done.",
                         metrics=ctx._metrics)
        except Cancelled as exc:
            final = dict(state=JOB_CANCELLED, finished=now(), message=str(exc))
        except MemoryError:
            final = dict(state=JOB_FAILED, finished=now(), message="The server ran out of memory; try a smaller "
                                                                   "tile size.")
        except Exception as exc:  # noqa: BLE001 - never let a job take the server down
            final = dict(state=JOB_FAILED, finished=now(), message=failure_message(exc, job_id))
        if final["state"] != JOB_SUCCEEDED:  # no half-written outputs stay behind (a full disk, a cancel)
            from fosgate.storage import remove_partials

            remove_partials(self.store.root / "jobs" / job_id)
        try:
            self._finish(job_id, final)
        finally:
            with self._cond:
                self._cancel.discard(job_id)
            self.notify()

    def _finish(self, job_id: str, fields: dict[str, Any]) -> None:
        """Write a job's final state; if the disk refuses, keep it in memory until :meth:`flush_pending`."""
        try:
            self.store.update_job(job_id, **fields)
        except Exception as exc:
            if translate(exc) is None:
                log.exception("could not record the end of job %s", job_id)
            else:
                log.warning("could not record the end of job %s yet (%s)", job_id, exc)
            with self._cond:
                self._pending_final[job_id] = fields

    def flush_pending(self) -> int:
        """Write final states the disk refused earlier; returns how many are still pending."""
        with self._cond:
            pending = dict(self._pending_final)
        for job_id, fields in pending.items():
            try:
                self.store.update_job(job_id, **fields)
            except Exception:  # noqa: BLE001 - still full: try again later
                continue
            with self._cond:
                self._pending_final.pop(job_id, None)
            self.notify()
        with self._cond:
            return len(self._pending_final)

    def get_job(self, job_id: str) -> JobRow:
        """The job as stored, with a final state the disk has not accepted yet laid over it."""
        job = self.store.get_job(job_id)
        with self._cond:
            fields = self._pending_final.get(job_id)
        if fields:
            for key, value in fields.items():
                setattr(job, key, value)
        return job

    def is_cancel_requested(self, job_id: str) -> bool:
        with self._cond:
            return job_id in self._cancel

    def cancel(self, job_id: str) -> JobRow:
        job = self.get_job(job_id)
        if job.final:
            return job
        with self._cond:
            self._cancel.add(job_id)
        if job.state != JOB_RUNNING:
            self._finish(job_id, dict(state=JOB_CANCELLED, finished=now(), message="Cancelled before it started."))
        self.notify()
        return self.get_job(job_id)

    def watch(self, job_id: str, is_active: Callable[[], bool], timeout: float = 30.0) -> Iterator[JobRow]:
        """Yield the job now and after each change until it is final (or the caller goes away)."""
        last: tuple | None = None
        while is_active():
            with self._cond:
                version = self._version
            job = self.get_job(job_id)
            key = (job.state, job.progress, job.message, len(job.artifacts), tuple(sorted(job.metrics.items())))
            if key != last:
                last = key
                yield job
            if job.final:
                return
            with self._cond:
                if self._version == version:
                    self._cond.wait(timeout=min(timeout, 1.0))

    def shutdown(self, wait: bool = False) -> None:
        with self._cond:
            running = [j.id for j in self.store.list_jobs() if not j.final]
            self._cancel.update(running)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        for job_id in running:
            job = self.get_job(job_id)
            if not job.final and job.state != JOB_RUNNING:
                self._finish(job_id, dict(state=JOB_CANCELLED, finished=now(), message="The server shut down."))
        self.flush_pending()
        self.notify()


def failure_message(exc: BaseException, job_id: str) -> str:
    """The job message for an exception: the library's own sentence, a storage sentence, or a generic
    sentence with an error id (the exception's text, which may hold server paths, goes to the log only)."""
    if isinstance(exc, FosgateError):
        return str(exc)
    storage = translate(exc)
    if storage is not None:
        log.warning("job %s failed on storage: %s", job_id, exc)
        return str(storage)
    error_id = f"err_{secrets.token_hex(4)}"
    log.error("job %s failed, error id %s:\n%s", job_id, error_id, traceback.format_exc())
    return (f"The job hit an unexpected error (error id {error_id}). Please report the error id to the server's "
            "administrator.")


__all__ = ["JobContext", "JobRunner", "JOB_FAILED", "failure_message", "file_sha256"]
