"""The gRPC servicers: translate protos to ``App`` calls and rows back to protos. No library work here."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc

from fosgate.app import App
from fosgate.errors import InvalidInput
from fosgate.rpc.errors import rpc_method
from fosgate.store.db import ArtifactRow, ClusteringRow, JobRow, LabelRow, ModelRow, ProposalRow, SlideRow
from fosgate.v1 import fosgate_pb2 as pb
from fosgate.v1 import fosgate_pb2_grpc as pbg

CHUNK = 1 << 20  # 1 MiB download chunks

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
    )


def artifact_pb(a: ArtifactRow) -> pb.Artifact:
    return pb.Artifact(artifact_id=a.id, name=a.name, size_bytes=a.size_bytes, sha256=a.sha256, media_type=a.media_type)


def job_pb(j: JobRow) -> pb.Job:
    return pb.Job(
        job_id=j.id, kind=j.kind, state=STATE_TO_PB[j.state], progress=j.progress, message=j.message,
        created=j.created, started=j.started, finished=j.finished,
        metrics={k: float(v) for k, v in j.metrics.items()}, artifacts=[artifact_pb(a) for a in j.artifacts],
        result_id=j.result_id, params=json.dumps(j.params),
    )


def rect(r: pb.Rect) -> list[int] | None:
    if r.x < 0 or r.y < 0 or r.width < 0 or r.height < 0:
        raise InvalidInput("A region cannot have negative coordinates or size.")
    return [r.x, r.y, r.width, r.height] if r.width and r.height else None


def _channel(has: bool, value: int) -> int | None:
    if not has or value < 0:
        return None
    return value


class SlideService(pbg.SlideServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc_method
    def UploadSlide(self, request_iterator: Iterator[pb.UploadSlideRequest], context) -> pb.Slide:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("An upload must start with a header (file name, size, checksum).")
        h = first.header

        def chunks() -> Iterator[bytes]:
            for msg in request_iterator:
                if msg.WhichOneof("part") != "chunk":
                    raise InvalidInput("Only one header is allowed per upload.")
                yield msg.chunk

        row = self.app.upload_slide(h.name, PB_TO_ROLE.get(h.role, "image"), _channel(h.has_channel, h.channel),
                                    h.size_bytes, h.sha256, chunks())
        return slide_pb(row)

    @rpc_method
    def RegisterSlide(self, request: pb.RegisterSlideRequest, context) -> pb.Slide:
        row = self.app.register_slide(request.path, PB_TO_ROLE.get(request.role, "image"),
                                      _channel(request.has_channel, request.channel), request.name)
        return slide_pb(row)

    @rpc_method
    def GetSlide(self, request: pb.GetSlideRequest, context) -> pb.Slide:
        return slide_pb(self.app.store.get_slide(request.slide_id))

    @rpc_method
    def ListSlides(self, request: pb.ListSlidesRequest, context) -> pb.ListSlidesResponse:
        role = None if request.role == pb.SLIDE_ROLE_UNSPECIFIED else PB_TO_ROLE[request.role]
        return pb.ListSlidesResponse(slides=[slide_pb(r) for r in self.app.store.list_slides(role)])

    @rpc_method
    def DeleteSlide(self, request: pb.DeleteSlideRequest, context) -> pb.DeleteSlideResponse:
        self.app.delete_slide(request.slide_id)
        return pb.DeleteSlideResponse()

    @rpc_method
    def ExportTiles(self, request: pb.ExportTilesRequest, context) -> pb.Job:
        params = {"slide_id": request.slide_id, "tile_size": request.tile_size or 128,
                  "margin": request.margin if request.tile_size else 4, "format": request.format or "png",
                  "region": rect(request.region)}
        return job_pb(self.app.start_tile_export(params))


class LabelService(pbg.LabelServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc_method
    def AddLabel(self, request: pb.AddLabelRequest, context) -> pb.Label:
        row = self.app.add_label(request.slide_id, request.mask_slide_id, rect(request.region),
                                 PB_TO_SOURCE.get(request.source, "human"), request.reviewer, request.parent_id,
                                 roi_zip=request.roi_zip, geojson=request.geojson)
        return label_pb(row)

    @rpc_method
    def ListLabels(self, request: pb.ListLabelsRequest, context) -> pb.ListLabelsResponse:
        return pb.ListLabelsResponse(labels=[label_pb(r) for r in self.app.store.list_labels(request.slide_id or None)])


class ModelService(pbg.ModelServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc_method
    def Train(self, request: pb.TrainRequest, context) -> pb.Job:
        params = {
            "label_ids": list(request.label_ids), "epochs": request.epochs or 30, "tile_size": request.tile_size or 128,
            "batch_size": request.batch_size or 16, "val_fraction": request.val_fraction or 0.2, "seed": request.seed,
            "name": request.name or "unet", "learning_rate": request.learning_rate or 1e-3,
            "steps_per_epoch": request.steps_per_epoch, "base_model_id": request.base_model_id,
            "patience": request.patience,
        }
        return job_pb(self.app.start_training(params))

    @rpc_method
    def GetModel(self, request: pb.GetModelRequest, context) -> pb.Model:
        return model_pb(self.app.store.get_model(request.model_id))

    @rpc_method
    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_pb(m) for m in self.app.store.list_models()])


class PredictionService(pbg.PredictionServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc_method
    def Predict(self, request: pb.PredictRequest, context) -> pb.Job:
        params = {
            "slide_id": request.slide_id, "model_id": request.model_id, "tile_size": request.tile_size,
            "halo": request.halo, "threshold": request.threshold,
            "min_size": request.min_size if request.min_size > 0 else 10,
            "split_touching": request.split_touching, "region": rect(request.region), "stem": request.stem,
        }
        return job_pb(self.app.start_prediction(params))


class JobService(pbg.JobServiceServicer):
    def __init__(self, app: App):
        self.app = app

    @rpc_method
    def GetJob(self, request: pb.GetJobRequest, context) -> pb.Job:
        return job_pb(self.app.runner.get_job(request.job_id))

    @rpc_method
    def WatchJob(self, request: pb.WatchJobRequest, context) -> Iterator[pb.JobEvent]:
        self.app.store.get_job(request.job_id)  # NOT_FOUND before streaming starts
        for job in self.app.runner.watch(request.job_id, context.is_active):
            yield pb.JobEvent(job=job_pb(job))

    @rpc_method
    def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.Job:
        return job_pb(self.app.runner.cancel(request.job_id))

    @rpc_method
    def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_pb(j) for j in self.app.store.list_jobs(request.kind or None)])

    @rpc_method
    def DownloadArtifact(self, request: pb.DownloadArtifactRequest, context) -> Iterator[pb.ArtifactChunk]:
        art = self.app.store.get_artifact(request.artifact_id)
        if request.offset < 0 or request.offset > art.size_bytes:
            raise InvalidInput(f"Offset {request.offset} lies outside the {art.size_bytes}-byte file.")
        with open(art.path, "rb") as fh:
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

    @rpc_method
    def ClusterTiles(self, request: pb.ClusterRequest, context) -> pb.Job:
        params = {"slide_id": request.slide_id, "tile_size": request.tile_size, "margin": request.margin
                  if request.tile_size else 4, "k": request.k, "seed": request.seed, "epochs": request.epochs,
                  "max_tiles": request.max_tiles, "region": rect(request.region)}
        return job_pb(self.app.start_clustering(params))

    @rpc_method
    def GetClustering(self, request: pb.GetClusteringRequest, context) -> pb.Clustering:
        row = self.app.store.get_clustering(request.clustering_id)
        return clustering_pb(row, self.app.clustering_tiles(row.id) if request.with_tiles else None)

    @rpc_method
    def ListClusterings(self, request: pb.ListClusteringsRequest, context) -> pb.ListClusteringsResponse:
        return pb.ListClusteringsResponse(clusterings=[clustering_pb(r) for r in
                                                       self.app.store.list_clusterings(request.slide_id)])

    @rpc_method
    def SelectTiles(self, request: pb.SelectRequest, context) -> pb.SelectResponse:
        tiles = self.app.select_tiles(request.clustering_id, request.n, STRATEGY_FROM_PB.get(request.strategy, "?"),
                                      list(request.exclude_clusters), request.model_id, request.seed,
                                      request.skip_labelled)
        return pb.SelectResponse(tiles=[cluster_tile_pb(t) for t in tiles])

    @rpc_method
    def AutoLabel(self, request: pb.AutoLabelRequest, context) -> pb.Job:
        sam = request.sam
        params = {
            "slide_id": request.slide_id, "method": METHOD_FROM_PB.get(request.method, "?"),
            "regions": [[r.x, r.y, r.width, r.height] for r in request.regions], "model_id": request.model_id,
            "clustering_id": request.clustering_id,
            "sam": {"points_per_side": sam.points_per_side, "pred_iou_thresh": sam.pred_iou_thresh,
                    "stability_score_thresh": sam.stability_score_thresh, "min_area": sam.min_area,
                    "max_area": sam.max_area, "has_thresholds": sam.has_thresholds},
        }
        return job_pb(self.app.start_autolabel(params))

    @rpc_method
    def ListProposals(self, request: pb.ListProposalsRequest, context) -> pb.ListProposalsResponse:
        rows = self.app.store.list_proposals(request.slide_id, PB_TO_PROPOSAL_STATE.get(request.state, ""),
                                             request.job_id)
        return pb.ListProposalsResponse(proposals=[proposal_pb(r) for r in rows])

    @rpc_method
    def ReviewProposal(self, request: pb.ReviewRequest, context) -> pb.ReviewResponse:
        decision = DECISION_FROM_PB.get(request.decision)
        if decision is None:
            raise InvalidInput("Say what to do with the proposal: accept, reject or replace.")
        edit = request.WhichOneof("edit")
        prop, label = self.app.review_proposal(
            request.proposal_id, decision, request.reviewer,
            mask_slide_id=request.mask_slide_id if edit == "mask_slide_id" else "",
            roi_zip=request.roi_zip if edit == "roi_zip" else b"",
            geojson=request.geojson if edit == "geojson" else b"",
            coordinates=COORDS_FROM_PB.get(request.coordinates, ""))
        return pb.ReviewResponse(proposal=proposal_pb(prop), label=label_pb(label) if label else None)

    @rpc_method
    def ExportProposals(self, request: pb.ListProposalsRequest, context) -> pb.Job:
        return job_pb(self.app.start_proposal_export({
            "slide_id": request.slide_id, "state": PB_TO_PROPOSAL_STATE.get(request.state, ""),
            "job_id": request.job_id}))

    @rpc_method
    def ExportDataset(self, request: pb.ExportDatasetRequest, context) -> pb.Job:
        return job_pb(self.app.start_dataset_export({"label_ids": list(request.label_ids),
                                                     "format": request.format}))

    @rpc_method
    def GetProposalTile(self, request: pb.GetProposalTileRequest, context) -> pb.ProposalTile:
        from fosgate.review import proposal_tile

        t = proposal_tile(self.app, request.proposal_id, request.slide_id, request.job_id, list(request.skip))
        return pb.ProposalTile(proposal=proposal_pb(t.proposal) if t.proposal else None, image_tiff=t.image_tiff,
                               roi_zip=t.roi_zip, geojson=t.geojson, pending=t.pending, slide_name=t.slide_name)


def add_services(server: grpc.Server, app: App) -> list[str]:
    """Register every fosgate service; returns their full names (for reflection and health)."""
    pbg.add_SlideServiceServicer_to_server(SlideService(app), server)
    pbg.add_LabelServiceServicer_to_server(LabelService(app), server)
    pbg.add_ModelServiceServicer_to_server(ModelService(app), server)
    pbg.add_PredictionServiceServicer_to_server(PredictionService(app), server)
    pbg.add_JobServiceServicer_to_server(JobService(app), server)
    pbg.add_LabellingServiceServicer_to_server(LabellingService(app), server)
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
