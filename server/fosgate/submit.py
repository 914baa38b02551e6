"""Job submission: the checks that need the store, the queue limit, and handing a spec to the runner.

A job arrives here as a validated, frozen spec (``fosgate.specs``); this module checks what only the
store knows (ids exist, the slide is an image, the region lies inside it, the model fits the slide),
fills in what "all" means at this moment (every label, the matching proposals), stores the spec as the
job row's params (``to_json``) and runs the task with the same object.

Invariants
- At most ``config.max_queued_jobs`` jobs are queued or running; one more is RESOURCE_EXHAUSTED with a
  sentence, never an unbounded queue.
- A finished job can be deleted (its folder and artifacts too) unless a clustering still reads its
  files; a queued or running job cannot.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from fosgate.config import ServerConfig
from fosgate.errors import InvalidInput, NotFound, Precondition, TooLarge
from fosgate.ingest import SlideIngest
from fosgate.jobs import tasks
from fosgate.jobs.runner import JobContext, JobRunner
from fosgate.review import Labels
from fosgate.specs import (
    AutoLabelSpec,
    ClusterSpec,
    CountRegionsSpec,
    ExportDatasetSpec,
    ExportModelSpec,
    ExportProposalsSpec,
    ExportTilesSpec,
    JobSpec,
    PredictSpec,
    PretrainSpec,
    TrainSpec,
    check_id,
    check_region,
)
from fosgate.store.db import JobRow, Store


class JobSubmission:
    """Starts jobs from specs."""

    def __init__(self, config: ServerConfig, store: Store, runner: JobRunner, slides: SlideIngest, labels: Labels,
                 executor=None):
        self.config = config
        self.store = store
        self.runner = runner
        self.env = tasks.TaskEnv(config=config, store=store, slides=slides, labels=labels, executor=executor)
        self._lock = threading.Lock()

    def _submit(self, spec: JobSpec, fn: Callable[[tasks.TaskEnv, JobContext, JobSpec], str]) -> JobRow:
        env = self.env
        with self._lock:  # count and insert together, so concurrent submits cannot overshoot the limit
            active = self.store.count_active_jobs()
            if active >= self.config.max_queued_jobs:
                raise TooLarge(f"This server already has {active} jobs waiting or running (its limit is "
                               f"{self.config.max_queued_jobs}); wait for some to finish or cancel some "
                               "(fosgate jobs), then submit again.")
            return self.runner.submit(spec.kind, spec.to_json(), lambda ctx: fn(env, ctx, spec))

    # ------------------------------------------------------------------ training and prediction
    def start_training(self, spec: TrainSpec) -> JobRow:
        label_ids = spec.label_ids or tuple(lb.id for lb in self.store.list_labels())
        if not label_ids:
            raise InvalidInput("There are no labels to train on; add image/mask pairs first "
                               "(fosgate train --images DIR --masks DIR does this for you).")
        for lid in label_ids:
            self.store.get_label(lid)
        if spec.base_model_id:
            base = self.store.get_model(spec.base_model_id)
            if float((base.meta.get("metrics") or {}).get("members", 1)) > 1:
                raise InvalidInput(f"Model '{base.name}' v{base.version} is an ensemble of several networks; "
                                   "fine-tuning starts from a single network (train an ensemble with the new labels "
                                   "instead, or fine-tune the single model it came from).")
        spec = TrainSpec.from_json({**spec.to_json(), "label_ids": list(label_ids)})
        return self._submit(spec, tasks.run_training)

    def start_pretraining(self, spec: PretrainSpec) -> JobRow:
        """Self-supervised pretraining on image slides (no labels): every slide exists (NOT_FOUND), is an
        image (not a mask) and gives the same number of channels; the tiles fit the memory cap and each
        slide's pixel size is within reach of the model's (INVALID_ARGUMENT)."""
        rows = [self.store.get_slide(sid) for sid in spec.slide_ids]
        for row in rows:
            if row.role != "image":
                raise InvalidInput(f"Slide '{row.name}' ({row.id}) was uploaded as a mask; pretrain on image slides "
                                   "(no masks or labels are needed).")
        channels = sorted({int(row.info["channels"]) for row in rows})
        if len(channels) > 1:
            raise InvalidInput(f"The slides mix images of {' and '.join(map(str, channels))} channels; pretrain one "
                               "model per kind of image (choose the same --channel when you upload them).")
        spec.check_tile_memory(channels[0])
        tasks.check_pretrain_scales(rows, tasks.pretrain_pixel_size(spec, rows))
        return self._submit(spec, tasks.run_pretraining)

    def start_prediction(self, spec: PredictSpec, regions: dict | None = None) -> JobRow:
        """``regions``: a client's region map (see ``fosgate.jobs.region_counts.stage_regions``), staged here so
        that a bad map is refused now, not by a failed job."""
        from fosgate.core.model import check_segments

        slide = self.store.get_slide(spec.slide_id)
        model = self.store.get_model(spec.model_id)
        check_segments(model.meta, model.id)
        if slide.role != "image":
            raise InvalidInput("This slide was uploaded as a mask; predict on an image slide.")
        if slide.info["channels"] != model.meta["in_channels"]:
            raise Precondition(
                f"Model '{model.id}' was trained on {model.meta['in_channels']}-channel images but this slide gives "
                f"{slide.info['channels']} channel(s); choose the matching channel when you upload it (--channel).")
        check_region(spec.region, slide.info["width"], slide.info["height"])
        if regions:
            from fosgate.jobs.region_counts import stage_regions

            spec = dataclasses.replace(spec, region_map=stage_regions(self.store, regions, slide))
        return self._submit(spec, tasks.run_prediction)

    def start_count_regions(self, job_id: str, regions: dict) -> JobRow:
        """Cells per region for a finished prediction job (``fosgate.jobs.region_counts``)."""
        from fosgate.jobs.region_counts import prediction_counts, stage_regions

        check_id(job_id, "job")
        job, _, _ = prediction_counts(self.store, job_id)
        slide = self.store.get_slide(job.params["slide_id"])
        spec = CountRegionsSpec.create(job_id=job_id, slide_id=slide.id,
                                       region_map=stage_regions(self.store, regions, slide))
        return self._submit(spec, tasks.run_count_regions)

    def start_tile_export(self, spec: ExportTilesSpec) -> JobRow:
        slide = self.store.get_slide(spec.slide_id)
        check_region(spec.region, slide.info["width"], slide.info["height"])
        return self._submit(spec, tasks.run_tile_export)

    # ------------------------------------------------------------------ labelling loop
    def start_clustering(self, spec: ClusterSpec) -> JobRow:
        slide = self.store.get_slide(spec.slide_id)
        if slide.role != "image":
            raise InvalidInput("Cluster the tiles of an image slide, not of a mask.")
        spec.check_against(slide.info["width"], slide.info["height"])
        return self._submit(spec, tasks.run_clustering)

    def start_autolabel(self, spec: AutoLabelSpec) -> JobRow:
        slide = self.store.get_slide(spec.slide_id)
        w, h = slide.info["width"], slide.info["height"]
        for r in spec.regions:
            check_region(r, w, h, "tile")
        if spec.method == "model":
            from fosgate.core.model import check_segments

            model = self.store.get_model(spec.model_id)
            check_segments(model.meta, model.id)
            if model.meta["in_channels"] != slide.info["channels"]:
                raise Precondition(f"Model '{model.id}' expects {model.meta['in_channels']}-channel images; this "
                                   f"slide has {slide.info['channels']}.")
        if spec.method == "sam":
            from fosgate.jobs.sam_process import check_sam

            # fail now with a clear status, not later in the job (loads the checkpoint in a child process)
            check_sam(self.config.sam_checkpoint, self.config.sam_model_type, self.store.tmp_path("-samcheck"))
        return self._submit(spec, tasks.run_autolabel)

    def start_proposal_export(self, spec: ExportProposalsSpec) -> JobRow:
        rows = self.store.list_proposals(spec.slide_id, spec.state, spec.job_id)
        if not rows:
            raise NotFound("There are no proposals matching that request.")
        spec = ExportProposalsSpec.from_json({**spec.to_json(), "proposal_ids": [r.id for r in rows]}).validate()
        return self._submit(spec, tasks.run_proposal_export)

    def start_dataset_export(self, spec: ExportDatasetSpec) -> JobRow:
        ids = spec.label_ids or tuple(lb.id for lb in self.store.list_labels())
        if not ids:
            raise InvalidInput("There are no labels to export yet.")
        for lid in ids:
            self.store.get_label(lid)
        spec = ExportDatasetSpec.from_json({**spec.to_json(), "label_ids": list(ids)})
        return self._submit(spec, tasks.run_dataset_export)

    def start_model_export(self, spec: ExportModelSpec) -> JobRow:
        """A bioimage.io package is a segmenter (deepImageJ, QuPath run it as one): a pretrained-only model is
        refused; its Keras / SavedModel weights may leave the server."""
        model = self.store.get_model(spec.model_id)
        if spec.format == "bioimageio":
            from fosgate.core.model import check_segments

            check_segments(model.meta, model.id)
        return self._submit(spec, tasks.run_model_export)

    # ------------------------------------------------------------------ finished jobs
    def delete_job(self, job_id: str) -> JobRow:
        """Delete a finished job with its artifacts and folder (see the invariants)."""
        check_id(job_id, "job")
        return self.store.delete_job(job_id)
