"""The application: what the server does, in plain Python (the gRPC layer only translates).

``App`` is a thin facade that wires three parts to one store, one job runner and (optionally) Dask:

- ``App.slides`` (:class:`fosgate.ingest.SlideIngest`): uploads, registration under ``--root``, path security;
- ``App.labels`` (:class:`fosgate.review.Labels`): labels, proposals, review decisions, tile selection;
- ``App.jobs`` (:class:`fosgate.submit.JobSubmission`): starting jobs from typed specs (``fosgate.specs``),
  the queue limit, deleting finished jobs.

Import graph (no cycles): specs <- ingest <- review <- jobs.tasks <- submit <- app <- rpc. Every method
raises the library's errors (``fosgate.errors``); nothing here knows about gRPC.
"""

from __future__ import annotations

from fosgate.config import ServerConfig
from fosgate.ingest import ROLES, SlideIngest, check_suffix
from fosgate.jobs.runner import JobRunner
from fosgate.review import LABEL_SOURCES, Labels, mask_to_labels
from fosgate.storage import DataFolder, cleanup_orphans
from fosgate.store.db import Store
from fosgate.submit import JobSubmission

__all__ = ["App", "ROLES", "LABEL_SOURCES", "check_suffix", "mask_to_labels"]


class App:
    """One fosgate server's state and actions."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = Store(config.data_dir)
        self.data = DataFolder(self.store.root, config.max_data_bytes)
        if self.store.read_only and self.data.release_reserve():
            self.store.reopen_writable()  # a full disk: the reserve makes room for the database to open
        cleanup_orphans(self.store)  # before the runner or any call can write
        self.data.ensure_reserve()
        self.runner = JobRunner(self.store, workers=config.job_workers, admit=self.data.check_quota)
        self.executor = None
        if config.dask_scheduler != "off":
            from fosgate.distributed import DaskExecutor

            self.executor = DaskExecutor(config.dask_scheduler, workers=config.dask_workers,
                                         processes=config.dask_processes)
        self.slides = SlideIngest(config, self.store, self.data)
        self.labels = Labels(config, self.store, self.slides)
        self.jobs = JobSubmission(config, self.store, self.runner, self.slides, self.labels, self.executor)

    def storage_recovered(self) -> None:
        """Called while the data folder is writable (health check): catch up on what a full or read-only disk
        refused (read-write database after a read-only start, job states, the reserve)."""
        if self.store.reopen_writable():
            self.runner.flush_pending()
            self.data.ensure_reserve()

    def close(self) -> None:
        self.runner.shutdown(wait=False)
        if self.executor is not None:
            self.executor.close()
        self.store.close()

    # a few shortcuts kept for scripts and tests that used the single App
    def open_slide(self, row):
        return self.slides.open_slide(row)
