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
from fosgate.store.db import Store
from fosgate.submit import JobSubmission

__all__ = ["App", "ROLES", "LABEL_SOURCES", "check_suffix", "mask_to_labels"]


class App:
    """One fosgate server's state and actions."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = Store(config.data_dir)
        self.runner = JobRunner(self.store, workers=config.job_workers)
        self.executor = None
        if config.dask_scheduler != "off":
            from fosgate.distributed import DaskExecutor

            self.executor = DaskExecutor(config.dask_scheduler, workers=config.dask_workers,
                                         processes=config.dask_processes)
        self.slides = SlideIngest(config, self.store)
        self.labels = Labels(config, self.store, self.slides)
        self.jobs = JobSubmission(config, self.store, self.runner, self.slides, self.labels, self.executor)

    def close(self) -> None:
        self.runner.shutdown(wait=False)
        if self.executor is not None:
            self.executor.close()
        self.store.close()

    # a few shortcuts kept for scripts and tests that used the single App
    def open_slide(self, row):
        return self.slides.open_slide(row)
