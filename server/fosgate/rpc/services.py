"""The gRPC servicers: translate protos to specs and ``App`` calls, and rows back to protos. No library work here.

Invariants
- Every request's text fields are capped before anything else looks at them (:func:`check_text_fields`):
  a 9 MiB reviewer or stem never reaches the store.
- Job requests become frozen specs (``fosgate.specs``) here, once; 0 / "" means the spec's default.
- List calls are paged by (created, id) keys; a page stops at ``page_size`` items or near
  :data:`PAGE_BYTES`, so a response always fits in one message.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from fosgate.app import App
from fosgate.errors import InvalidInput, TooLarge
from fosgate.rpc.errors import rpc_method
from fosgate.specs import (
    AutoLabelSpec,
    ClusterSpec,
    ExportDatasetSpec,
    ExportModelSpec,
    ExportProposalsSpec,
    ExportTilesSpec,
    PredictSpec,
    PretrainSpec,
    TrainSpec,
)
from fosgate.store.db import ArtifactRow, ClusteringRow, JobRow, LabelRow, ModelRow, ProposalRow, SlideRow
from fosgate.v1 import fosgate_pb2 as pb
from fosgate.v1 import fosgate_pb2_grpc as pbg

CHUNK = 1 << 20  # 1 MiB download chunks
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
PAGE_BYTES = 4 << 20
#: caps on string fields of any request, by field name (others: MAX_TEXT_CHARS)
MAX_TEXT_CHARS = 1024
TEXT_CAPS = {"path": 4096, "name": 8192, "stem": 1024, "sha256": 128, "reviewer": 200, "page_token": 256}
FIELD_WORDS = {"stem": "output name", "name": "name", "reviewer": "reviewer name", "path": "file path",
               "label_ids": "label id", "slide_ids": "slide id", "format": "format name", "kind": "job kind"}
ID_FIELDS = frozenset({"slide_id", "mask_slide_id", "label_id", "parent_id", "model_id", "base_model_id", "job_id",
                       "artifact_id", "clustering_id", "proposal_id", "label_ids", "replaces_label_id", "slide_ids"})


def check_text_fields(msg, depth: int = 0) -> None:
    """Refuse (INVALID_ARGUMENT) a request whose string fields exceed their caps, at any nesting depth."""
    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_STRING:
            cap = 64 if fd.name in ID_FIELDS else TEXT_CAPS.get(fd.name, MAX_TEXT_CHARS)
            for v in ([value] if isinstance(value, str) else value):
                if len(v) > cap:
                    what = FIELD_WORDS.get(fd.name) or fd.name.replace("_", " ")
                    raise InvalidInput(f"The {what} ('{fd.name}') is {len(v):,} characters long; this server accepts "
                                       f"at most {cap}.")
        elif fd.type == FieldDescriptor.TYPE_MESSAGE and depth < 4 and not fd.message_type.GetOptions().map_entry:
            for v in ([value] if isinstance(value, Message) else value):
                check_text_fields(v, depth + 1)


def rpc(fn):
    """``rpc_method`` (error mapping) plus the text caps on unary requests (streamed uploads check their header)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def checked_stream(self, request, context):
            if hasattr(request, "ListFields"):
                check_text_fields(request)
            yield from fn(self, request, context)

        return rpc_method(checked_stream)

    @functools.wraps(fn)
    def checked(self, request, context):
        if hasattr(request, "ListFields"):
            check_text_fields(request)
        return fn(self, request, context)

    return rpc_method(checked)


# ---------------------------------------------------------------------- stream budgets
class StreamBudget:
    """At most ``limit`` long streams of one kind at once; one more is refused at once (RESOURCE_EXHAUSTED)
    rather than taking a thread that short calls and health checks need."""

    def __init__(self, limit: int, refusal: str):
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)
        self._refusal = refusal

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._sem.acquire(blocking=False):
            raise TooLarge(self._refusal.format(limit=self.limit))
        try:
            yield
        finally:
            self._sem.release()


def budgets_for(config) -> dict[str, StreamBudget]:
    return {
        "watch": StreamBudget(config.max_watchers, "This server is already streaming {limit} job watches; poll "
                              "with GetJob, or close other watchers and try again."),
        "transfer": StreamBudget(config.max_transfers, "This server is already moving {limit} files; try again "
                                 "when one of the uploads or downloads has finished."),
    }


# ---------------------------------------------------------------------- paging
def _decode_token(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        created, key = json.loads(base64.urlsafe_b64decode(token.encode("ascii") + b"==").decode("utf-8"))
        if not isinstance(created, str) or not isinstance(key, str):
            raise ValueError
        return created, key
    except Exception:  # noqa: BLE001
        raise InvalidInput("The page token is not one this server gave out; start the listing again without it.") \
            from None


def _encode_token(created: str, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created, key]).encode("utf-8")).decode("ascii").rstrip("=")


def page(fetch: Callable[..., Sequence[Any]], to_pb: Callable[[Any], Any], page_size: int,
         page_token: str) -> tuple[list[Any], str]:
    """One page: ``fetch(after=key, limit=n)`` rows -> protos, and the token of the next page ('' = done)."""
    if page_size < 0:
        raise InvalidInput(f"page_size must be 0 (the default, {DEFAULT_PAGE_SIZE}) or positive (got {page_size}).")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    rows = fetch(after=_decode_token(page_token), limit=size + 1)
    out, used = [], 0
    for i, row in enumerate(rows[:size]):
        item = to_pb(row)
        used += item.ByteSize()
        if out and used > PAGE_BYTES:
            last = rows[i - 1]
            return out, _encode_token(last.created, last.id)
        out.append(item)
    if len(rows) > size:
        last = rows[size - 1]
        return out, _encode_token(last.created, last.id)
    return out, ""

ROLE_TO_PB = {"image": pb.SLIDE_ROLE_IMAGE, "mask": pb.SLIDE_ROLE_MASK}
PB_TO_ROLE = {pb.SLIDE_ROLE_UNSPECIFIED: "image", pb.SLIDE_ROLE_IMAGE: "image", pb.SLIDE_ROLE_MASK: "mask"}
SOURCE_TO_PB = {
    "human": pb.LABEL_SOURCE_HUMAN, "classical": pb.LABEL_SOURCE_CLASSICAL, "sam": pb.LABEL_SOURCE_SAM,
    "model": pb.LABEL_SOURCE_MODEL, "import": pb.LABEL_SOURCE_IMPORT,
}
PB_TO_SOURCE = {v: k for k, v in SOURCE_TO_PB.items()} | {pb.LABEL_SOURCE_UNSPECIFIED: "human"}
STATE_TO_PB = {
    "queued": pb.JOB_STATE_QUEUED, "running": pb.JOB_STATE_RUNNING, "succeeded": pb.JOB_STATE_SUCCEEDED,
    "failed": pb.JOB_STATE_FAILED, "cancelled": pb.JOB_STATE_CANCELLED,
}


def slide_pb(r: SlideRow) -> pb.Slide:
    i = r.info
    return pb.Slide(
        slide_id=r.id, name=r.name, role=ROLE_TO_PB[r.role], width=i["width"], height=i["height"],
        channels=i["channels"], source_channels=i["source_channels"], dtype=i["dtype"], levels=i["levels"],
        pixel_size_um=i.get("pixel_size_um") or 0.0, format=i["format"], tiled=bool(i["tiled"]),
        size_bytes=r.size_bytes, sha256=r.sha256, channel=-1 if r.channel is None else r.channel,
        created=r.created, source_path=r.path if r.registered else "",
    )


def label_pb(r: LabelRow) -> pb.Label:
    return pb.Label(
        label_id=r.id, slide_id=r.slide_id, region=pb.Rect(x=r.x, y=r.y, width=r.width, height=r.height),
        source=SOURCE_TO_PB.get(r.source, pb.LABEL_SOURCE_UNSPECIFIED), reviewer=r.reviewer, created=r.created,
        parent_id=r.parent_id, version=r.version, foreground_pixels=r.foreground_pixels, objects=r.objects,
    )


def model_pb(r: ModelRow) -> pb.Model:
    m = r.meta
    return pb.Model(
        model_id=r.id, name=r.name, version=r.version, created=r.created, in_channels=m["in_channels"],
        receptive_field=m["receptive_field"], train_tile_size=m["train_tile_size"],
        metrics={k: float(v) for k, v in m.get("metrics", {}).items()}, label_ids=m.get("label_ids", []),
        normalization=m["normalization"], job_id=r.job_id, parent_model_id=m.get("parent_model_id", ""),
        arch=m.get("arch", "reference"), pixel_size_um=float(m.get("pixel_size_um") or 0.0),
        postprocess=_postprocess_of(m),
    )


def _postprocess_of(meta: dict) -> dict[str, float]:
    """The calibrated post-processing of a stored model's meta (format 1: its threshold, min size 10)."""
    post = meta.get("postprocess") or {"threshold": float(meta.get("threshold", 0.5)), "min_size_px": 10}
    out = {k: float(v) for k, v in post.items()}
    px = float(meta.get("pixel_size_um") or 0.0)
    if px > 0 and "min_size_px" in out:
        out["min_area_um2"] = out["min_size_px"] * px * px
    return out


def artifact_pb(a: ArtifactRow) -> pb.Artifact:
    return pb.Artifact(artifact_id=a.id, name=a.name, size_bytes=a.size_bytes, sha256=a.sha256, media_type=a.media_type)


def job_pb(j: JobRow) -> pb.Job:
    return pb.Job(
        job_id=j.id, kind=j.kind, state=STATE_TO_PB[j.state], progress=j.progress, message=j.message,
        created=j.created, started=j.started, finished=j.finished,
        metrics={k: float(v) for k, v in j.metrics.items()}, artifacts=[artifact_pb(a) for a in j.artifacts],
        result_id=j.result_id, params=json.dumps(j.params),
    )


def rect(r: pb.Rect) -> tuple[int, int, int, int] | None:
    """A region, or None for "the whole slide" (width or height 0)."""
    if r.x < 0 or r.y < 0 or r.width < 0 or r.height < 0:
        raise InvalidInput("A region cannot have negative coordinates or size.")
    return (r.x, r.y, r.width, r.height) if r.width and r.height else None


def region_map(m: pb.RegionMap) -> dict:
    """A RegionMap as the plain dict ``fosgate.jobs.region_counts.stage_regions`` takes."""
    source = m.WhichOneof("source")
    out: dict = {"names": m.names, "scale": m.scale, "pixel_size_um": m.pixel_size_um}
    if source:
        out[source] = getattr(m, source)
    return out


def _channel(has: bool, value: int) -> int | None:
    if not has or value < 0:
        return None
    return value


class SlideService(pbg.SlideServiceServicer):
    def __init__(self, app: App, budgets: dict[str, StreamBudget] | None = None):
        self.app = app
        self.budgets = budgets or budgets_for(app.config)

    @rpc
    def UploadSlide(self, request_iterator: Iterator[pb.UploadSlideRequest], context) -> pb.Slide:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("An upload must start with a header (file name, size, checksum).")
        h = first.header
        check_text_fields(h)

        def chunks() -> Iterator[bytes]:
            for msg in request_iterator:
                if msg.WhichOneof("part") != "chunk":
                    raise InvalidInput("Only one header is allowed per upload.")
                yield msg.chunk

        with self.budgets["transfer"].slot():
            row = self.app.slides.upload_slide(h.name, PB_TO_ROLE.get(h.role, "image"),
                                               _channel(h.has_channel, h.channel), h.size_bytes, h.sha256, chunks())
        return slide_pb(row)

    @rpc
    def RegisterSlide(self, request: pb.RegisterSlideRequest, context) -> pb.Slide:
        row = self.app.slides.register_slide(request.path, PB_TO_ROLE.get(request.role, "image"),
                                      _channel(request.has_channel, request.channel), request.name)
        return slide_pb(row)

    @rpc
    def GetSlide(self, request: pb.GetSlideRequest, context) -> pb.Slide:
        return slide_pb(self.app.store.get_slide(request.slide_id))

    @rpc
    def ListSlides(self, request: pb.ListSlidesRequest, context) -> pb.ListSlidesResponse:
        if request.role not in PB_TO_ROLE:
            raise InvalidInput("Unknown slide role.")
        role = None if request.role == pb.SLIDE_ROLE_UNSPECIFIED else PB_TO_ROLE[request.role]
        items, token = page(lambda **kw: self.app.store.list_slides(role, **kw), slide_pb, request.page_size,
                            request.page_token)
        return pb.ListSlidesResponse(slides=items, next_page_token=token)

    @rpc
    def DeleteSlide(self, request: pb.DeleteSlideRequest, context) -> pb.DeleteSlideResponse:
        self.app.slides.delete_slide(request.slide_id)
        return pb.DeleteSlideResponse()

    @rpc
    def ExportTiles(self, request: pb.ExportTilesRequest, context) -> pb.Job:
        spec = ExportTilesSpec.create(slide_id=request.slide_id, tile_size=request.tile_size, margin=request.margin,
                                      format=request.format.lower(), region=rect(request.region))
        return job_pb(self.app.jobs.start_tile_export(spec))


class LabelService(pbg.LabelServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc
    def AddLabel(self, request: pb.AddLabelRequest, context) -> pb.Label:
        row = self.app.labels.add_label(request.slide_id, request.mask_slide_id, rect(request.region),
                                 PB_TO_SOURCE.get(request.source, "human"), request.reviewer, request.parent_id,
                                 roi_zip=request.roi_zip, geojson=request.geojson)
        return label_pb(row)

    @rpc
    def ListLabels(self, request: pb.ListLabelsRequest, context) -> pb.ListLabelsResponse:
        items, token = page(lambda **kw: self.app.store.list_labels(request.slide_id or None, **kw), label_pb,
                            request.page_size, request.page_token)
        return pb.ListLabelsResponse(labels=items, next_page_token=token)

    @rpc
    def DeleteLabel(self, request: pb.DeleteLabelRequest, context) -> pb.DeleteLabelResponse:
        self.app.labels.delete_label(request.label_id)
        return pb.DeleteLabelResponse()


class ModelService(pbg.ModelServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc
    def Train(self, request: pb.TrainRequest, context) -> pb.Job:
        spec = TrainSpec.create(
            label_ids=tuple(request.label_ids), epochs=request.epochs, tile_size=request.tile_size,
            batch_size=request.batch_size, val_fraction=request.val_fraction, seed=request.seed, name=request.name,
            learning_rate=request.learning_rate, steps_per_epoch=request.steps_per_epoch,
            base_model_id=request.base_model_id, patience=request.patience, arch=request.arch,
            pixel_size_um=request.pixel_size_um, members=request.members)
        return job_pb(self.app.jobs.start_training(spec))

    @rpc
    def Pretrain(self, request: pb.PretrainRequest, context) -> pb.Job:
        spec = PretrainSpec.create(
            slide_ids=tuple(request.slide_ids), arch=request.arch, epochs=request.epochs,
            steps_per_epoch=request.steps_per_epoch, batch_size=request.batch_size, tile_size=request.tile_size,
            patch_size=request.patch_size, mask_ratio=request.mask_ratio, masking=request.masking.lower(),
            tiles=request.tiles, learning_rate=request.learning_rate, seed=request.seed, name=request.name,
            pixel_size_um=request.pixel_size_um)
        return job_pb(self.app.jobs.start_pretraining(spec))

    @rpc
    def GetModel(self, request: pb.GetModelRequest, context) -> pb.Model:
        return model_pb(self.app.store.get_model(request.model_id))

    @rpc
    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        items, token = page(self.app.store.list_models, model_pb, request.page_size, request.page_token)
        return pb.ListModelsResponse(models=items, next_page_token=token)

    @rpc
    def ExportModel(self, request: pb.ExportModelRequest, context) -> pb.Job:
        spec = ExportModelSpec.create(model_id=request.model_id, format=request.format.lower(),
                                      authors=tuple(a.strip() for a in request.authors if a.strip()))
        return job_pb(self.app.jobs.start_model_export(spec))


class PredictionService(pbg.PredictionServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc
    def Predict(self, request: pb.PredictRequest, context) -> pb.Job:
        spec = PredictSpec.create(
            slide_id=request.slide_id, model_id=request.model_id, tile_size=request.tile_size, halo=request.halo,
            threshold=request.threshold, min_size=request.min_size, split_touching=request.split_touching,
            region=rect(request.region), stem=request.stem, tta=request.tta, pixel_size_um=request.pixel_size_um,
            seed_threshold=request.seed_threshold, min_area_um2=request.min_area_um2)
        regions = region_map(request.regions) if request.HasField("regions") else None
        return job_pb(self.app.jobs.start_prediction(spec, regions))

    @rpc
    def CountRegions(self, request: pb.CountRegionsRequest, context) -> pb.Job:
        if not request.HasField("regions"):
            raise InvalidInput("Give the regions to count in: QuPath GeoJSON, an ImageJ ROI set, or a label image "
                               "with its names table.")
        return job_pb(self.app.jobs.start_count_regions(request.job_id, region_map(request.regions)))


class JobService(pbg.JobServiceServicer):
    def __init__(self, app: App, budgets: dict[str, StreamBudget] | None = None):
        self.app = app
        self.budgets = budgets or budgets_for(app.config)

    @rpc
    def GetJob(self, request: pb.GetJobRequest, context) -> pb.Job:
        return job_pb(self.app.runner.get_job(request.job_id))

    @rpc
    def WatchJob(self, request: pb.WatchJobRequest, context) -> Iterator[pb.JobEvent]:
        self.app.store.get_job(request.job_id)  # NOT_FOUND before streaming starts
        with self.budgets["watch"].slot():
            for job in self.app.runner.watch(request.job_id, context.is_active):
                yield pb.JobEvent(job=job_pb(job))

    @rpc
    def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.Job:
        return job_pb(self.app.runner.cancel(request.job_id))

    @rpc
    def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        items, token = page(lambda **kw: self.app.store.list_jobs(request.kind or None, **kw), job_pb,
                            request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=items, next_page_token=token)

    @rpc
    def DeleteJob(self, request: pb.DeleteJobRequest, context) -> pb.DeleteJobResponse:
        self.app.jobs.delete_job(request.job_id)
        return pb.DeleteJobResponse()

    @rpc
    def DownloadArtifact(self, request: pb.DownloadArtifactRequest, context) -> Iterator[pb.ArtifactChunk]:
        art = self.app.store.get_artifact(request.artifact_id)
        if request.offset < 0 or request.offset > art.size_bytes:
            raise InvalidInput(f"Offset {request.offset} lies outside the {art.size_bytes}-byte file.")
        with self.budgets["transfer"].slot(), open(art.path, "rb") as fh:
            fh.seek(request.offset)
            offset = request.offset
            while context.is_active():
                data = fh.read(CHUNK)
                if not data:
                    break
                yield pb.ArtifactChunk(data=data, offset=offset, total_bytes=art.size_bytes)
                offset += len(data)


STRATEGY_FROM_PB = {
    pb.SELECT_STRATEGY_UNSPECIFIED: "balanced", pb.SELECT_STRATEGY_BALANCED: "balanced",
    pb.SELECT_STRATEGY_PROPORTIONAL: "proportional", pb.SELECT_STRATEGY_RANDOM: "random",
    pb.SELECT_STRATEGY_ACTIVE: "active",
}
METHOD_FROM_PB = {
    pb.AUTO_LABEL_METHOD_UNSPECIFIED: "classical", pb.AUTO_LABEL_METHOD_CLASSICAL: "classical",
    pb.AUTO_LABEL_METHOD_SAM: "sam", pb.AUTO_LABEL_METHOD_MODEL: "model",
}
PROPOSAL_STATE_TO_PB = {
    "pending": pb.PROPOSAL_STATE_PENDING, "accepted": pb.PROPOSAL_STATE_ACCEPTED,
    "rejected": pb.PROPOSAL_STATE_REJECTED, "replaced": pb.PROPOSAL_STATE_REPLACED,
}
PB_TO_PROPOSAL_STATE = {v: k for k, v in PROPOSAL_STATE_TO_PB.items()} | {pb.PROPOSAL_STATE_UNSPECIFIED: ""}
DECISION_FROM_PB = {
    pb.REVIEW_DECISION_ACCEPT: "accept", pb.REVIEW_DECISION_REJECT: "reject", pb.REVIEW_DECISION_REPLACE: "replace",
}
COORDS_FROM_PB = {pb.EDIT_COORDINATES_UNSPECIFIED: "", pb.EDIT_COORDINATES_TILE: "tile",
                  pb.EDIT_COORDINATES_SLIDE: "slide"}


def cluster_tile_pb(t: dict) -> pb.ClusterTile:
    return pb.ClusterTile(index=t["index"], region=pb.Rect(x=t["x"], y=t["y"], width=t["width"], height=t["height"]),
                          cluster=t["cluster"], tsne_x=t["tsne_x"], tsne_y=t["tsne_y"],
                          mean_intensity=t["mean_intensity"])


def clustering_pb(r: ClusteringRow, tiles: list[dict] | None = None) -> pb.Clustering:
    return pb.Clustering(clustering_id=r.id, slide_id=r.slide_id, k=r.k, tile_size=r.tile_size, job_id=r.job_id,
                         cluster_sizes=r.sizes, tiles=[cluster_tile_pb(t) for t in tiles or []], created=r.created)


def proposal_pb(r: ProposalRow) -> pb.Proposal:
    return pb.Proposal(
        proposal_id=r.id, slide_id=r.slide_id, region=pb.Rect(x=r.x, y=r.y, width=r.width, height=r.height),
        source=SOURCE_TO_PB.get(r.source, pb.LABEL_SOURCE_UNSPECIFIED), state=PROPOSAL_STATE_TO_PB[r.state],
        objects=r.objects, created=r.created, job_id=r.job_id, label_id=r.label_id, reviewer=r.reviewer,
        decided=r.decided, uncertainty=r.uncertainty,
    )


class LabellingService(pbg.LabellingServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc
    def ClusterTiles(self, request: pb.ClusterRequest, context) -> pb.Job:
        spec = ClusterSpec.create(slide_id=request.slide_id, tile_size=request.tile_size, margin=request.margin,
                                  k=request.k, seed=request.seed, epochs=request.epochs, max_tiles=request.max_tiles,
                                  region=rect(request.region))
        return job_pb(self.app.jobs.start_clustering(spec))

    @rpc
    def GetClustering(self, request: pb.GetClusteringRequest, context) -> pb.Clustering:
        row = self.app.store.get_clustering(request.clustering_id)
        return clustering_pb(row, self.app.labels.clustering_tiles(row.id) if request.with_tiles else None)

    @rpc
    def ListClusterings(self, request: pb.ListClusteringsRequest, context) -> pb.ListClusteringsResponse:
        items, token = page(lambda **kw: self.app.store.list_clusterings(request.slide_id, **kw), clustering_pb,
                            request.page_size, request.page_token)
        return pb.ListClusteringsResponse(clusterings=items, next_page_token=token)

    @rpc
    def SelectTiles(self, request: pb.SelectRequest, context) -> pb.SelectResponse:
        tiles = self.app.labels.select_tiles(request.clustering_id, request.n, STRATEGY_FROM_PB.get(request.strategy, "?"),
                                      list(request.exclude_clusters), request.model_id, request.seed,
                                      request.skip_labelled)
        return pb.SelectResponse(tiles=[cluster_tile_pb(t) for t in tiles])

    @rpc
    def AutoLabel(self, request: pb.AutoLabelRequest, context) -> pb.Job:
        sam = request.sam
        spec = AutoLabelSpec.create(
            slide_id=request.slide_id, method=METHOD_FROM_PB.get(request.method, "?"),
            regions=tuple((r.x, r.y, r.width, r.height) for r in request.regions), model_id=request.model_id,
            clustering_id=request.clustering_id,
            sam={"points_per_side": sam.points_per_side, "pred_iou_thresh": sam.pred_iou_thresh,
                 "stability_score_thresh": sam.stability_score_thresh, "min_area": sam.min_area,
                 "max_area": sam.max_area, "has_thresholds": sam.has_thresholds})
        return job_pb(self.app.jobs.start_autolabel(spec))

    @rpc
    def ListProposals(self, request: pb.ListProposalsRequest, context) -> pb.ListProposalsResponse:
        state = PB_TO_PROPOSAL_STATE.get(request.state, "")
        items, token = page(lambda **kw: self.app.store.list_proposals(request.slide_id, state, request.job_id, **kw),
                            proposal_pb, request.page_size, request.page_token)
        return pb.ListProposalsResponse(proposals=items, next_page_token=token)

    @rpc
    def DeleteProposal(self, request: pb.DeleteProposalRequest, context) -> pb.DeleteProposalResponse:
        self.app.labels.delete_proposal(request.proposal_id)
        return pb.DeleteProposalResponse()

    @rpc
    def ReviewProposal(self, request: pb.ReviewRequest, context) -> pb.ReviewResponse:
        decision = DECISION_FROM_PB.get(request.decision)
        if decision is None:
            raise InvalidInput("Say what to do with the proposal: accept, reject or replace.")
        edit = request.WhichOneof("edit")
        prop, label = self.app.labels.review_proposal(
            request.proposal_id, decision, request.reviewer,
            mask_slide_id=request.mask_slide_id if edit == "mask_slide_id" else "",
            roi_zip=request.roi_zip if edit == "roi_zip" else b"",
            geojson=request.geojson if edit == "geojson" else b"",
            coordinates=COORDS_FROM_PB.get(request.coordinates, ""), replaces_label_id=request.replaces_label_id)
        return pb.ReviewResponse(proposal=proposal_pb(prop), label=label_pb(label) if label else None)

    @rpc
    def ExportProposals(self, request: pb.ListProposalsRequest, context) -> pb.Job:
        return job_pb(self.app.jobs.start_proposal_export(ExportProposalsSpec.create(
            slide_id=request.slide_id, state=PB_TO_PROPOSAL_STATE.get(request.state, ""), job_id=request.job_id)))

    @rpc
    def ExportDataset(self, request: pb.ExportDatasetRequest, context) -> pb.Job:
        return job_pb(self.app.jobs.start_dataset_export(ExportDatasetSpec.create(
            label_ids=tuple(request.label_ids), format=request.format.lower())))

    @rpc_method
    def GetProposalTile(self, request: pb.GetProposalTileRequest, context) -> pb.ProposalTile:
        from fosgate.proposal_tiles import proposal_tile

        t = proposal_tile(self.app, request.proposal_id, request.slide_id, request.job_id, list(request.skip))
        return pb.ProposalTile(proposal=proposal_pb(t.proposal) if t.proposal else None, image_tiff=t.image_tiff,
                               roi_zip=t.roi_zip, geojson=t.geojson, pending=t.pending, slide_name=t.slide_name)


def add_services(server: grpc.Server, app: App, budgets: dict[str, StreamBudget] | None = None) -> list[str]:
    """Register every fosgate service; returns their full names (for reflection and health)."""
    budgets = budgets or budgets_for(app.config)
    pbg.add_SlideServiceServicer_to_server(SlideService(app, budgets), server)
    pbg.add_LabelServiceServicer_to_server(LabelService(app), server)
    pbg.add_ModelServiceServicer_to_server(ModelService(app), server)
    pbg.add_PredictionServiceServicer_to_server(PredictionService(app), server)
    pbg.add_JobServiceServicer_to_server(JobService(app, budgets), server)
    pbg.add_LabellingServiceServicer_to_server(LabellingService(app), server)
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
