"""Hostile input on every RPC (hypothesis) and concurrent load: clean statuses, no crash, no error."""

from __future__ import annotations

import statistics
import threading
import time

import grpc
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fosgate.v1 import fosgate_pb2 as pb
from fosgate.v1 import fosgate_pb2_grpc as pbg

CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DATA_LOSS,
         grpc.StatusCode.OUT_OF_RANGE}

ids = st.one_of(st.text(max_size=40), st.sampled_from(["", "sl_", "md_000000000000", "../../etc/passwd", "\x00"]))
ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
rects = st.builds(pb.Rect, x=ints, y=ints, width=ints, height=ints)
blobs = st.one_of(st.binary(max_size=2000), st.sampled_from([b"PK\x03\x04", b"II*\x00", b"\x89PNG\r\n\x1a\n",
                                                             b'{"type": "FeatureCollection", "features": 5}']))


# text as a hostile client sends it: long, unicode, absolute, '..', separators, NUL and control characters
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(min_size=100, max_size=5000),
    st.sampled_from(["/etc/passwd", "/tmp/x/escape", "../../../../tmp/x/escape", "..", ".", "a/b", "a\\b",
                     "nul\x00byte", "line\nbreak", "\u202eevil", "..\u2215..\u2215etc", "C:\\Windows\\x",
                     "x" * 300, "ü" * 3000 + ".tif", "/" + "é" * 400, "sl_" + "0" * 100_000]),
    st.builds(lambda a, b: a + b, st.sampled_from(["../", "/", "./", "//"]), st.text(max_size=200)),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server

    d = tmp_path_factory.mktemp("fuzz")
    roots = d / "roots"
    roots.mkdir()
    running = start_server(ServerConfig(data_dir=d / "data", port=0, roots=[roots], max_upload_bytes=1 << 20))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    img = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    tifffile.imwrite(d / "img.tif", img)
    from fosgate_client.client import FosgateClient

    with FosgateClient(f"127.0.0.1:{running.port}") as fg:
        slide = fg.upload_slide(d / "img.tif")
    from conftest import tree_snapshot

    LIVE_STATE.update(root=d, before=tree_snapshot(d, skip=d / "data"), siblings=tree_snapshot(d.parent, skip=d))
    yield channel, slide.slide_id, f"127.0.0.1:{running.port}"
    channel.close()
    running.stop(grace=0.2)


def expect_clean(fn, *args):
    try:
        fn(*args, timeout=30)
    except grpc.RpcError as err:
        assert err.code() in CLEAN, f"{err.code()}: {err.details()}"
        assert err.details() and "Traceback" not in err.details()


def uploads(header, chunks):
    yield pb.UploadSlideRequest(header=header)
    for c in chunks:
        yield pb.UploadSlideRequest(chunk=c)


LIVE_STATE: dict = {}

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


@given(name=st.text(max_size=30), size=st.integers(-5, 5000), sha=st.text(max_size=70),
       chunks=st.lists(blobs, max_size=4), role=st.integers(0, 5), channel=st.integers(-3, 5))
@SETTINGS
def test_fuzz_upload(live, name, size, sha, chunks, role, channel):
    ch, _, _ = live
    header = pb.UploadSlideHeader(name=name, size_bytes=size, sha256=sha, role=role, channel=channel,
                                  has_channel=channel >= 0)
    expect_clean(pbg.SlideServiceStub(ch).UploadSlide, uploads(header, chunks))


@given(slide=ids, mask=ids, region=rects, source=st.integers(0, 9), roi=blobs, geo=blobs, which=st.integers(0, 2))
@SETTINGS
def test_fuzz_labels_and_reviews(live, slide, mask, region, source, roi, geo, which):
    ch, good, _ = live
    req = pb.AddLabelRequest(slide_id=[slide, good, good][which], mask_slide_id=mask, region=region, source=source)
    if which == 1:
        req.roi_zip = roi
    elif which == 2:
        req.geojson = geo
    expect_clean(pbg.LabelServiceStub(ch).AddLabel, req)
    expect_clean(pbg.LabellingServiceStub(ch).ReviewProposal,
                 pb.ReviewRequest(proposal_id=mask, decision=source % 4, roi_zip=roi))


@given(slide=ids, model=ids, region=rects, tile=ints, halo=ints, thr=st.floats(allow_nan=True, allow_infinity=True),
       k=ints, n=ints, path=st.text(max_size=60))
@SETTINGS
def test_fuzz_jobs_and_lookups(live, slide, model, region, tile, halo, thr, k, n, path):
    ch, good, _ = live
    expect_clean(pbg.PredictionServiceStub(ch).Predict, pb.PredictRequest(
        slide_id=slide or good, model_id=model, tile_size=tile, halo=halo, threshold=thr, region=region))
    expect_clean(pbg.ModelServiceStub(ch).Train, pb.TrainRequest(label_ids=[model], epochs=k, tile_size=tile))
    expect_clean(pbg.LabellingServiceStub(ch).ClusterTiles, pb.ClusterRequest(slide_id=slide, k=k, tile_size=tile))
    expect_clean(pbg.LabellingServiceStub(ch).SelectTiles, pb.SelectRequest(clustering_id=slide, n=n))
    expect_clean(pbg.LabellingServiceStub(ch).AutoLabel, pb.AutoLabelRequest(slide_id=good, regions=[region]))
    expect_clean(pbg.SlideServiceStub(ch).RegisterSlide, pb.RegisterSlideRequest(path=path))
    expect_clean(pbg.SlideServiceStub(ch).ExportTiles, pb.ExportTilesRequest(slide_id=slide or good, tile_size=tile,
                                                                             margin=halo, region=region))
    expect_clean(pbg.JobServiceStub(ch).GetJob, pb.GetJobRequest(job_id=slide))
    expect_clean(pbg.JobServiceStub(ch).CancelJob, pb.CancelJobRequest(job_id=model))


@given(name=hostile_text, path=hostile_text, reviewer=hostile_text, stem=hostile_text, ident=hostile_text,
       token=hostile_text, which=st.integers(0, 3))
@SETTINGS
def test_fuzz_text_fields(live, name, path, reviewer, stem, ident, token, which):
    ch, good, _ = live
    slides, labels = pbg.SlideServiceStub(ch), pbg.LabelServiceStub(ch)
    labelling, jobs = pbg.LabellingServiceStub(ch), pbg.JobServiceStub(ch)
    header = pb.UploadSlideHeader(name=name + [".tif", "", ".png", ".ome.tif"][which], size_bytes=0)
    expect_clean(slides.UploadSlide, uploads(header, [tifffile_bytes()]))
    expect_clean(slides.RegisterSlide, pb.RegisterSlideRequest(path=path, name=name))
    expect_clean(labels.AddLabel, pb.AddLabelRequest(slide_id=good, region=pb.Rect(width=8, height=8),
                                                     reviewer=reviewer, parent_id=ident, geojson=b"[]"))
    expect_clean(pbg.PredictionServiceStub(ch).Predict, pb.PredictRequest(slide_id=good, model_id=ident, stem=stem))
    expect_clean(pbg.ModelServiceStub(ch).Train, pb.TrainRequest(label_ids=[ident], name=name, base_model_id=ident))
    expect_clean(slides.ExportTiles, pb.ExportTilesRequest(slide_id=good, format=name))
    expect_clean(labelling.ReviewProposal, pb.ReviewRequest(proposal_id=ident, decision=1 + which % 3,
                                                            reviewer=reviewer, replaces_label_id=ident))
    expect_clean(labelling.ExportDataset, pb.ExportDatasetRequest(label_ids=[ident], format=name))
    expect_clean(jobs.ListJobs, pb.ListJobsRequest(kind=name, page_token=token))
    expect_clean(slides.ListSlides, pb.ListSlidesRequest(page_token=token, page_size=which))
    expect_clean(labels.DeleteLabel, pb.DeleteLabelRequest(label_id=ident))
    expect_clean(labelling.DeleteProposal, pb.DeleteProposalRequest(proposal_id=ident))
    expect_clean(jobs.DeleteJob, pb.DeleteJobRequest(job_id=ident))
    expect_clean(slides.DeleteSlide, pb.DeleteSlideRequest(slide_id=ident))


def tifffile_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8), np.uint8))
    return buf.getvalue()


def test_fuzzing_changed_nothing_outside_the_data_folder(live):
    """Runs after the fuzz tests (file order): the data folder's parent is as it was before them."""
    from conftest import tree_snapshot

    root, before = LIVE_STATE["root"], LIVE_STATE["before"]
    assert tree_snapshot(root, skip=root / "data") == before
    assert tree_snapshot(root.parent, skip=root) == LIVE_STATE["siblings"]


def test_server_still_healthy_after_fuzzing(live):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ch, good, _ = live
    assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
    assert pbg.SlideServiceStub(ch).GetSlide(pb.GetSlideRequest(slide_id=good), timeout=10).width == 64


def test_load_16_clients_x_200_mixed_calls(live):
    _, good, address = live
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(address) as c:
            slides, models = pbg.SlideServiceStub(c), pbg.ModelServiceStub(c)
            labels, jobs = pbg.LabelServiceStub(c), pbg.JobServiceStub(c)
            calls = [lambda: slides.GetSlide(pb.GetSlideRequest(slide_id=good), timeout=30),
                     lambda: slides.ListSlides(pb.ListSlidesRequest(), timeout=30),
                     lambda: models.ListModels(pb.ListModelsRequest(), timeout=30),
                     lambda: labels.ListLabels(pb.ListLabelsRequest(), timeout=30),
                     lambda: jobs.ListJobs(pb.ListJobsRequest(), timeout=30)]
            for _ in range(200):
                t0 = time.perf_counter()
                try:
                    calls[rng.integers(len(calls))]()
                except grpc.RpcError as err:
                    with lock:
                        errors.append(f"{err.code()}: {err.details()}")
                with lock:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert not errors, errors[:5]
    assert len(latencies) == 16 * 200
    q = statistics.quantiles(latencies, n=100)
    print(f"\nload: 3200 calls from 16 clients in {wall:.1f} s ({3200 / wall:.0f} calls/s); "
          f"p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")
