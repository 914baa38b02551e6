"""A typed, context-managed Python client for the fosgate service.

It speaks only the protocol (``fosgate_client.v1`` stubs generated from protos/fosgate/v1): uploads are
streamed in chunks with a SHA-256 checksum, downloads are streamed to disk, and jobs are followed
with the server-streaming ``WatchJob``.

    with FosgateClient("127.0.0.1:50051") as fg:
        slide = fg.upload_slide("slide.ome.tif")
        job = fg.predict(slide.slide_id, model_id)
        job = fg.wait(job.job_id, on_event=print)
        fg.download_outputs(job, "out/")
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from fosgate_client.v1 import fosgate_pb2 as pb
from fosgate_client.v1 import fosgate_pb2_grpc as pbg

CHUNK = 1 << 20
MAX_MESSAGE = 16 << 20
FINAL_STATES = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
STATE_NAMES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in pb.JobState.items()}


class FosgateClientError(RuntimeError):
    """A call failed; ``str()`` is a message for the user, ``code`` the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.code = code


def _explain(err: grpc.RpcError, address: str) -> FosgateClientError:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return FosgateClientError(
            f"Cannot reach the fosgate server at {address}. Is it running? Start it with 'fosgate serve'.", code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return FosgateClientError(f"The fosgate server at {address} did not answer in time.", code)
    return FosgateClientError(details or str(code), code)


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        metadata = list(d.metadata or []) + [self._header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_stream_unary(self, continuation, d, request_iterator):
        return continuation(self._details(d), request_iterator)

    def intercept_stream_stream(self, continuation, d, request_iterator):
        return continuation(self._details(d), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def _payload(data: str | os.PathLike | bytes, what: str) -> bytes:
    """Bytes for a unary call, refused with a plain message when they cannot fit in one message."""
    blob = data if isinstance(data, bytes) else Path(data).read_bytes()
    if len(blob) > MAX_MESSAGE - (64 << 10):
        raise FosgateClientError(
            f"The {what} is {len(blob) / 2**20:.1f} MB; one request carries at most {MAX_MESSAGE >> 20} MB. "
            "Send a smaller region, or upload the mask as an image (it is streamed).",
            grpc.StatusCode.RESOURCE_EXHAUSTED)
    return blob


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class FosgateClient:
    """One connection to a fosgate server. Every method raises :class:`FosgateClientError`."""

    def __init__(self, address: str = "127.0.0.1:50051", timeout: float = 60.0, *, token: str | None = None,
                 tls_ca: str | os.PathLike | None = None, tls: bool = False):
        """``token``: sent as ``authorization: Bearer <token>`` (default: $FOSGATE_TOKEN);
        ``tls_ca``/``tls``: connect with TLS, trusting that CA file (or the system's roots)."""
        self.address = address
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
        if tls or tls_ca:
            creds = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes() if tls_ca else None)
            channel = grpc.secure_channel(address, creds, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        token = token if token is not None else os.environ.get("FOSGATE_TOKEN")
        if token:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self.channel = channel
        self.slides = pbg.SlideServiceStub(self.channel)
        self.labels = pbg.LabelServiceStub(self.channel)
        self.models = pbg.ModelServiceStub(self.channel)
        self.predictions = pbg.PredictionServiceStub(self.channel)
        self.jobs = pbg.JobServiceStub(self.channel)
        self.labelling = pbg.LabellingServiceStub(self.channel)

    def __enter__(self) -> FosgateClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise _explain(err, self.address) from None

    def _pages(self, method, request, field: str, page_size: int = 0) -> list:
        """Every item of a paged List call: follows ``next_page_token`` until the server says it is done."""
        out: list = []
        request.page_size = page_size
        while True:
            resp = self._call(method, request)
            out.extend(getattr(resp, field))
            if not resp.next_page_token:
                return out
            request.page_token = resp.next_page_token

    def check(self, timeout: float = 5.0) -> None:
        """Raise a clear error unless the server answers its health check."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = self._call(stub.Check, health_pb2.HealthCheckRequest(service=""), timeout)
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise FosgateClientError(f"The fosgate server at {self.address} is not serving.")

    # ------------------------------------------------------------------ slides
    def upload_slide(self, path: str | os.PathLike, role: str = "image", channel: int | None = None,
                     name: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> pb.Slide:
        """Stream a file to the server; the server checks size and SHA-256 before accepting it."""
        path = Path(path)
        if not path.is_file():
            raise FosgateClientError(f"There is no file '{path}'.")
        size = path.stat().st_size
        header = pb.UploadSlideHeader(
            name=name or path.name, size_bytes=size, sha256=sha256_file(path),
            role=pb.SLIDE_ROLE_MASK if role == "mask" else pb.SLIDE_ROLE_IMAGE,
            channel=-1 if channel is None else channel, has_channel=channel is not None)

        def requests() -> Iterator[pb.UploadSlideRequest]:
            yield pb.UploadSlideRequest(header=header)
            sent = 0
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    sent += len(block)
                    yield pb.UploadSlideRequest(chunk=block)
                    if on_progress:
                        on_progress(sent, size)

        return self._call(self.slides.UploadSlide, requests(), timeout=max(self.timeout, size / 5e6))

    def register_slide(self, path: str, role: str = "image", channel: int | None = None) -> pb.Slide:
        return self._call(self.slides.RegisterSlide, pb.RegisterSlideRequest(
            path=str(path), role=pb.SLIDE_ROLE_MASK if role == "mask" else pb.SLIDE_ROLE_IMAGE,
            channel=-1 if channel is None else channel, has_channel=channel is not None))

    def get_slide(self, slide_id: str) -> pb.Slide:
        return self._call(self.slides.GetSlide, pb.GetSlideRequest(slide_id=slide_id))

    def list_slides(self, page_size: int = 0) -> list[pb.Slide]:
        return self._pages(self.slides.ListSlides, pb.ListSlidesRequest(), "slides", page_size)

    def delete_slide(self, slide_id: str) -> None:
        """Delete a slide with its proposals and clusterings (refused while labels use it or a job reads it)."""
        self._call(self.slides.DeleteSlide, pb.DeleteSlideRequest(slide_id=slide_id))

    def export_tiles(self, slide_id: str, tile_size: int = 0, margin: int | None = None, fmt: str = "") -> pb.Job:
        """0 / None / "": the server's defaults (128-px tiles, 4-px margin, PNG). A margin given with no tile
        size keeps the server's tile size; with a tile size and no margin, the server's margin (4) is sent."""
        if margin is None:
            margin = 4 if tile_size else 0
        return self._call(self.slides.ExportTiles, pb.ExportTilesRequest(
            slide_id=slide_id, tile_size=tile_size, margin=margin, format=fmt))

    # ------------------------------------------------------------------ labels
    def add_label(self, slide_id: str, mask_slide_id: str = "", region: tuple[int, int, int, int] | None = None,
                  source: str = "human", reviewer: str = "", parent_id: str = "", *,
                  roi_zip: str | os.PathLike | bytes | None = None,
                  geojson: str | os.PathLike | bytes | None = None) -> pb.Label:
        """Store a label: an uploaded mask slide, or an ImageJ ROI set (region coordinates) or
        QuPath GeoJSON (slide coordinates)."""
        src = getattr(pb, f"LABEL_SOURCE_{source.upper()}", pb.LABEL_SOURCE_HUMAN)
        r = pb.Rect(x=region[0], y=region[1], width=region[2], height=region[3]) if region else pb.Rect()
        req = pb.AddLabelRequest(slide_id=slide_id, mask_slide_id=mask_slide_id, region=r, source=src,
                                 reviewer=reviewer, parent_id=parent_id)
        if roi_zip is not None:
            req.roi_zip = _payload(roi_zip, "ROI set")
        if geojson is not None:
            req.geojson = _payload(geojson, "GeoJSON")
        return self._call(self.labels.AddLabel, req)

    def list_labels(self, slide_id: str = "", page_size: int = 0) -> list[pb.Label]:
        return self._pages(self.labels.ListLabels, pb.ListLabelsRequest(slide_id=slide_id), "labels", page_size)

    def delete_label(self, label_id: str) -> None:
        """Remove a label (and its file) from the training set."""
        self._call(self.labels.DeleteLabel, pb.DeleteLabelRequest(label_id=label_id))

    # ------------------------------------------------------------------ models
    def train(self, label_ids: list[str] | None = None, **params) -> pb.Job:
        """Start a training job; params are TrainRequest fields (epochs, tile_size, ...); a field left out or 0
        takes the server's default (see the proto)."""
        return self._call(self.models.Train, pb.TrainRequest(label_ids=label_ids or [], **params))

    def pretrain(self, slide_ids: list[str], **params) -> pb.Job:
        """Start a self-supervised pretraining job on unlabelled image slides; params are PretrainRequest fields
        (epochs, tiles, masking, ...); a field left out or 0 takes the server's default (see the proto). The
        job's result_id is a model to fine-tune with :meth:`train` (``base_model_id``); it cannot predict."""
        return self._call(self.models.Pretrain, pb.PretrainRequest(slide_ids=list(slide_ids), **params))

    def get_model(self, model_id: str) -> pb.Model:
        return self._call(self.models.GetModel, pb.GetModelRequest(model_id=model_id))

    def list_models(self, page_size: int = 0) -> list[pb.Model]:
        return self._pages(self.models.ListModels, pb.ListModelsRequest(), "models", page_size)

    def export_model(self, model_id: str, fmt: str = "bioimageio", authors: list[str] | None = None) -> pb.Job:
        """Start packaging a model (fmt: bioimageio, keras or savedmodel); the job's artifact is the zip."""
        return self._call(self.models.ExportModel, pb.ExportModelRequest(model_id=model_id, format=fmt,
                                                                         authors=authors or []))

    # ------------------------------------------------------------------ prediction
    def predict(self, slide_id: str, model_id: str, *, tile_size: int = 0, halo: int = 0, threshold: float = 0.0,
                min_size: int = 0, split_touching: bool = False,
                region: tuple[int, int, int, int] | None = None, stem: str = "", tta: bool = False,
                pixel_size_um: float = 0.0, seed_threshold: float = 0.0, min_area_um2: float = 0.0,
                regions: pb.RegionMap | None = None) -> pb.Job:
        """Start a prediction job; 0/False = the model's own calibrated post-processing. With ``regions`` (see
        :meth:`region_map`) it also writes ``<stem>.regions.csv``, the cells per brain region."""
        r = pb.Rect(x=region[0], y=region[1], width=region[2], height=region[3]) if region else pb.Rect()
        req = pb.PredictRequest(slide_id=slide_id, model_id=model_id, tile_size=tile_size, halo=halo,
                                threshold=threshold, min_size=min_size, split_touching=split_touching, region=r,
                                stem=stem, tta=tta, pixel_size_um=pixel_size_um, seed_threshold=seed_threshold,
                                min_area_um2=min_area_um2)
        if regions is not None:
            req.regions.CopyFrom(regions)
        return self._call(self.predictions.Predict, req)

    def region_map(self, regions: str | os.PathLike, names: str | os.PathLike | None = None, *, scale: float = 0.0,
                   pixel_size_um: float = 0.0) -> pb.RegionMap:
        """A RegionMap from a file: QuPath GeoJSON (.geojson/.json), an ImageJ ROI set (.zip/.roi), or a label
        image (.tif/.tiff/.png; e.g. an atlas annotation) with its names table ``names`` (CSV or Allen
        ontology JSON). A label image too big for one message is uploaded first (as a mask slide).
        ``scale``: slide pixels per label-image pixel (0: inferred)."""
        path = Path(regions)
        if not path.is_file():
            raise FosgateClientError(f"There is no regions file '{path}'.")
        low = path.name.lower()
        m = pb.RegionMap(scale=scale, pixel_size_um=pixel_size_um)
        if names is not None:
            m.names = _payload(names, "names table")
        if low.endswith((".geojson", ".json")):
            m.geojson = _payload(path, "regions GeoJSON")
        elif low.endswith((".zip", ".roi")):
            m.roi_zip = _payload(path, "regions ROI set")
        elif low.endswith((".tif", ".tiff", ".png")):
            if names is None:
                raise FosgateClientError(f"The label image '{path.name}' needs its names table (--region-names): a "
                                         "CSV id,name[,parent_id] or an Allen ontology JSON.")
            if path.stat().st_size > MAX_MESSAGE // 2:
                m.label_slide_id = self.upload_slide(path, role="mask").slide_id
            else:
                m.label_image = path.read_bytes()
        else:
            raise FosgateClientError(f"'{path.name}' is not a regions file fosgate knows: use QuPath GeoJSON "
                                     "(.geojson), an ImageJ ROI set (.zip) or a label image (.tif/.png) with a "
                                     "names table.")
        return m

    def count_regions(self, job_id: str, regions: pb.RegionMap) -> pb.Job:
        """Start a job that counts the cells of a finished prediction job per region; its artifact is
        ``<stem>.regions.csv``."""
        return self._call(self.predictions.CountRegions, pb.CountRegionsRequest(job_id=job_id, regions=regions))

    # ------------------------------------------------------------------ labelling loop
    def cluster_tiles(self, slide_id: str, *, k: int = 0, tile_size: int = 0, margin: int | None = None, seed: int = 0,
                      epochs: int = 0, max_tiles: int = 0,
                      region: tuple[int, int, int, int] | None = None) -> pb.Job:
        """Start a clustering job; its result_id is the clustering id. 0 / None: the server's defaults."""
        if margin is None:
            margin = 4 if tile_size else 0
        r = pb.Rect(x=region[0], y=region[1], width=region[2], height=region[3]) if region else pb.Rect()
        return self._call(self.labelling.ClusterTiles, pb.ClusterRequest(
            slide_id=slide_id, k=k, tile_size=tile_size, margin=margin, seed=seed, epochs=epochs, max_tiles=max_tiles,
            region=r))

    def get_clustering(self, clustering_id: str, with_tiles: bool = False) -> pb.Clustering:
        return self._call(self.labelling.GetClustering,
                          pb.GetClusteringRequest(clustering_id=clustering_id, with_tiles=with_tiles))

    def list_clusterings(self, slide_id: str = "", page_size: int = 0) -> list[pb.Clustering]:
        return self._pages(self.labelling.ListClusterings, pb.ListClusteringsRequest(slide_id=slide_id), "clusterings",
                           page_size)

    def select_tiles(self, clustering_id: str, n: int, strategy: str = "balanced", *, exclude: list[int] | None = None,
                     model_id: str = "", seed: int = 0, skip_labelled: bool = False) -> list[pb.ClusterTile]:
        """strategy: balanced, proportional, random or active (needs model_id)."""
        st = getattr(pb, f"SELECT_STRATEGY_{strategy.upper()}", None)
        if st is None:
            raise FosgateClientError(f"Unknown selection strategy '{strategy}'.")
        return list(self._call(self.labelling.SelectTiles, pb.SelectRequest(
            clustering_id=clustering_id, n=n, strategy=st, exclude_clusters=exclude or [], model_id=model_id,
            seed=seed, skip_labelled=skip_labelled)).tiles)

    def autolabel(self, slide_id: str, regions: list[tuple[int, int, int, int]], method: str = "classical", *,
                  model_id: str = "", sam: dict | None = None, clustering_id: str = "") -> pb.Job:
        """Start an auto-labelling job (method: classical, sam or model) that stores pending proposals."""
        m = getattr(pb, f"AUTO_LABEL_METHOD_{method.upper()}", None)
        if m is None:
            raise FosgateClientError(f"Unknown auto-label method '{method}'.")
        rects = [pb.Rect(x=x, y=y, width=w, height=h) for x, y, w, h in regions]
        return self._call(self.labelling.AutoLabel, pb.AutoLabelRequest(
            slide_id=slide_id, regions=rects, method=m, model_id=model_id, sam=pb.SamParams(**(sam or {})),
            clustering_id=clustering_id))

    def list_proposals(self, slide_id: str = "", state: str = "", job_id: str = "",
                       page_size: int = 0) -> list[pb.Proposal]:
        st = getattr(pb, f"PROPOSAL_STATE_{state.upper()}") if state else pb.PROPOSAL_STATE_UNSPECIFIED
        return self._pages(self.labelling.ListProposals, pb.ListProposalsRequest(
            slide_id=slide_id, state=st, job_id=job_id), "proposals", page_size)

    def delete_proposal(self, proposal_id: str) -> None:
        """Remove a proposal (pending or decided); a label made from it stays."""
        self._call(self.labelling.DeleteProposal, pb.DeleteProposalRequest(proposal_id=proposal_id))

    def export_proposals(self, slide_id: str = "", state: str = "", job_id: str = "") -> pb.Job:
        """A job whose artifact proposals.zip holds each proposal's tile, labels, ROI set and GeoJSON."""
        st = getattr(pb, f"PROPOSAL_STATE_{state.upper()}") if state else pb.PROPOSAL_STATE_UNSPECIFIED
        return self._call(self.labelling.ExportProposals, pb.ListProposalsRequest(
            slide_id=slide_id, state=st, job_id=job_id))

    def review(self, proposal_id: str, decision: str, *, reviewer: str = "", mask: str | os.PathLike | None = None,
               roi_zip: str | os.PathLike | bytes | None = None, geojson: str | os.PathLike | bytes | None = None,
               coordinates: str = "", replaces: str = "") -> pb.ReviewResponse:
        """Accept, reject or replace a proposal. A replacement is a mask image file (uploaded first),
        an ImageJ ROI set or QuPath GeoJSON (tile coordinates for ROIs, slide coordinates for GeoJSON
        unless ``coordinates`` says otherwise). A decision is final: replacing an already decided proposal
        must name the label it replaces (``replaces``: its ``label_id``, or its proposal id if it has none)."""
        d = getattr(pb, f"REVIEW_DECISION_{decision.upper()}", None)
        if d is None:
            raise FosgateClientError(f"Unknown review decision '{decision}'; use accept, reject or replace.")
        req = pb.ReviewRequest(proposal_id=proposal_id, decision=d, reviewer=reviewer, replaces_label_id=replaces,
                               coordinates=getattr(pb, f"EDIT_COORDINATES_{coordinates.upper()}")
                               if coordinates else pb.EDIT_COORDINATES_UNSPECIFIED)
        if mask is not None:
            req.mask_slide_id = self.upload_slide(mask, role="mask").slide_id
        elif roi_zip is not None:
            req.roi_zip = _payload(roi_zip, "ROI set")
        elif geojson is not None:
            req.geojson = _payload(geojson, "GeoJSON")
        return self._call(self.labelling.ReviewProposal, req)

    def proposal_tile(self, proposal_id: str = "", *, slide_id: str = "", job_id: str = "",
                      skip: list[str] | tuple[str, ...] = ()) -> pb.ProposalTile:
        """One proposal's tile (TIFF bytes), its cells as an ImageJ ROI set (tile coordinates) and as
        GeoJSON (slide coordinates), and how many proposals are pending. Without ``proposal_id``: the
        next pending proposal of ``slide_id`` / ``job_id`` not in ``skip``; ``HasField("proposal")`` is
        False when none is left."""
        return self._call(self.labelling.GetProposalTile, pb.GetProposalTileRequest(
            proposal_id=proposal_id, slide_id=slide_id, job_id=job_id, skip=list(skip)))

    def export_dataset(self, label_ids: list[str] | None = None, fmt: str = "") -> pb.Job:
        return self._call(self.labelling.ExportDataset, pb.ExportDatasetRequest(label_ids=label_ids or [], format=fmt))

    # ------------------------------------------------------------------ jobs
    def get_job(self, job_id: str) -> pb.Job:
        return self._call(self.jobs.GetJob, pb.GetJobRequest(job_id=job_id))

    def list_jobs(self, kind: str = "", page_size: int = 0) -> list[pb.Job]:
        return self._pages(self.jobs.ListJobs, pb.ListJobsRequest(kind=kind), "jobs", page_size)

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job with its artifacts (refused while it is queued or running)."""
        self._call(self.jobs.DeleteJob, pb.DeleteJobRequest(job_id=job_id))

    def cancel(self, job_id: str) -> pb.Job:
        return self._call(self.jobs.CancelJob, pb.CancelJobRequest(job_id=job_id))

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[pb.Job]:
        """Yield the job on every change until it ends."""
        try:
            for event in self.jobs.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout):
                yield event.job
        except grpc.RpcError as err:
            raise _explain(err, self.address) from None

    def wait(self, job_id: str, on_event: Callable[[pb.Job], None] | None = None,
             timeout: float | None = None) -> pb.Job:
        """Follow a job to its end and return it; raise if it failed or was cancelled."""
        job = None
        for job in self.watch(job_id, timeout=timeout):
            if on_event:
                on_event(job)
        if job is None or job.state not in FINAL_STATES:
            job = self.get_job(job_id)
        if job.state != pb.JOB_STATE_SUCCEEDED:
            raise FosgateClientError(f"Job {job_id} {STATE_NAMES[job.state]}: {job.message}")
        return job

    def download_artifact(self, artifact: pb.Artifact, dest: str | os.PathLike) -> Path:
        """Stream an artifact into ``dest`` (a folder or a file path); verify its SHA-256."""
        dest = Path(dest)
        target = dest / artifact.name if dest.is_dir() else dest
        tmp = target.with_name(target.name + ".part")
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as fh:
                for chunk in self.jobs.DownloadArtifact(pb.DownloadArtifactRequest(artifact_id=artifact.artifact_id),
                                                        timeout=max(self.timeout, artifact.size_bytes / 5e6)):
                    fh.write(chunk.data)
                    h.update(chunk.data)
        except grpc.RpcError as err:
            tmp.unlink(missing_ok=True)
            raise _explain(err, self.address) from None
        if artifact.sha256 and h.hexdigest() != artifact.sha256:
            tmp.unlink(missing_ok=True)
            raise FosgateClientError(f"The download of {artifact.name} arrived damaged; try again.")
        os.replace(tmp, target)
        return target

    def download_outputs(self, job: pb.Job, out_dir: str | os.PathLike) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return [self.download_artifact(a, out) for a in job.artifacts]
