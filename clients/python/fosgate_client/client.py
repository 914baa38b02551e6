"""A typed, context-managed Python client for the fosgate service.

It speaks only the protocol (``fosgate.v1`` stubs generated from protos/fosgate/v1): uploads are
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

from fosgate.v1 import fosgate_pb2 as pb
from fosgate.v1 import fosgate_pb2_grpc as pbg

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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class FosgateClient:
    """One connection to a fosgate server. Every method raises :class:`FosgateClientError`."""

    def __init__(self, address: str = "127.0.0.1:50051", timeout: float = 60.0):
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)])
        self.slides = pbg.SlideServiceStub(self.channel)
        self.labels = pbg.LabelServiceStub(self.channel)
        self.models = pbg.ModelServiceStub(self.channel)
        self.predictions = pbg.PredictionServiceStub(self.channel)
        self.jobs = pbg.JobServiceStub(self.channel)

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

    def list_slides(self) -> list[pb.Slide]:
        return list(self._call(self.slides.ListSlides, pb.ListSlidesRequest()).slides)

    def export_tiles(self, slide_id: str, tile_size: int = 128, margin: int = 4, fmt: str = "png") -> pb.Job:
        return self._call(self.slides.ExportTiles, pb.ExportTilesRequest(
            slide_id=slide_id, tile_size=tile_size, margin=margin, format=fmt))

    # ------------------------------------------------------------------ labels
    def add_label(self, slide_id: str, mask_slide_id: str, region: tuple[int, int, int, int] | None = None,
                  source: str = "human", reviewer: str = "", parent_id: str = "") -> pb.Label:
        src = getattr(pb, f"LABEL_SOURCE_{source.upper()}", pb.LABEL_SOURCE_HUMAN)
        r = pb.Rect(x=region[0], y=region[1], width=region[2], height=region[3]) if region else pb.Rect()
        return self._call(self.labels.AddLabel, pb.AddLabelRequest(
            slide_id=slide_id, mask_slide_id=mask_slide_id, region=r, source=src, reviewer=reviewer,
            parent_id=parent_id))

    def list_labels(self, slide_id: str = "") -> list[pb.Label]:
        return list(self._call(self.labels.ListLabels, pb.ListLabelsRequest(slide_id=slide_id)).labels)

    # ------------------------------------------------------------------ models
    def train(self, label_ids: list[str] | None = None, **params) -> pb.Job:
        """Start a training job; params are TrainRequest fields (epochs, tile_size, ...)."""
        return self._call(self.models.Train, pb.TrainRequest(label_ids=label_ids or [], **params))

    def get_model(self, model_id: str) -> pb.Model:
        return self._call(self.models.GetModel, pb.GetModelRequest(model_id=model_id))

    def list_models(self) -> list[pb.Model]:
        return list(self._call(self.models.ListModels, pb.ListModelsRequest()).models)

    # ------------------------------------------------------------------ prediction
    def predict(self, slide_id: str, model_id: str, *, tile_size: int = 0, halo: int = 0, threshold: float = 0.5,
                min_size: int = 10, split_touching: bool = False,
                region: tuple[int, int, int, int] | None = None, stem: str = "") -> pb.Job:
        r = pb.Rect(x=region[0], y=region[1], width=region[2], height=region[3]) if region else pb.Rect()
        return self._call(self.predictions.Predict, pb.PredictRequest(
            slide_id=slide_id, model_id=model_id, tile_size=tile_size, halo=halo, threshold=threshold,
            min_size=min_size, split_touching=split_touching, region=r, stem=stem))

    # ------------------------------------------------------------------ jobs
    def get_job(self, job_id: str) -> pb.Job:
        return self._call(self.jobs.GetJob, pb.GetJobRequest(job_id=job_id))

    def list_jobs(self, kind: str = "") -> list[pb.Job]:
        return list(self._call(self.jobs.ListJobs, pb.ListJobsRequest(kind=kind)).jobs)

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
