"""A real server on 127.0.0.1: health, reflection, uploads, registration and bad input."""

from __future__ import annotations

import hashlib

import grpc
import numpy as np
import pytest
import tifffile

from fosgate.v1 import fosgate_pb2 as pb
from fosgate_client.client import FosgateClientError


def _tiff(path, shape=(300, 400), dtype=np.uint8, **kw):
    rng = np.random.default_rng(0)
    data = rng.integers(0, np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1, shape).astype(dtype)
    tifffile.imwrite(path, data, **kw)
    return data


def _assert_serving(client):
    client.check()
    client.list_slides()


def test_health_and_reflection(server, client):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    stub = health_pb2_grpc.HealthStub(client.channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(service="fosgate.v1.PredictionService"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    services = set(ProtoReflectionDescriptorDatabase(client.channel).get_services())
    assert {"fosgate.v1.SlideService", "fosgate.v1.JobService", "grpc.health.v1.Health"} <= services


def test_upload_reports_metadata(client, tmp_path):
    path = tmp_path / "slide.ome.tif"
    data = np.zeros((3, 500, 700), np.uint16)
    tifffile.imwrite(path, data, ome=True, tile=(256, 256),
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.65, "PhysicalSizeXUnit": "µm"})
    slide = client.upload_slide(path, channel=1)
    assert (slide.width, slide.height, slide.channels, slide.source_channels) == (700, 500, 1, 3)
    assert slide.dtype == "uint16" and slide.tiled and slide.format == "ome-tiff"
    assert slide.pixel_size_um == pytest.approx(0.65)
    assert slide.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert client.get_slide(slide.slide_id).name == "slide.ome.tif"
    assert [s.slide_id for s in client.list_slides()] == [slide.slide_id]


def _raw_upload(client, name, chunks, size=None, sha=""):
    header = pb.UploadSlideHeader(name=name, size_bytes=size if size is not None else sum(map(len, chunks)), sha256=sha)
    reqs = [pb.UploadSlideRequest(header=header)] + [pb.UploadSlideRequest(chunk=c) for c in chunks]
    return client.slides.UploadSlide(iter(reqs), timeout=30)


def test_checksum_and_size_mismatch(client, tmp_path):
    path = tmp_path / "a.tif"
    _tiff(path)
    blob = path.read_bytes()
    with pytest.raises(grpc.RpcError) as err:
        _raw_upload(client, "a.tif", [blob[:1000], blob[1000:]], sha="0" * 64)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    with pytest.raises(grpc.RpcError) as err:
        _raw_upload(client, "a.tif", [blob[:1000]], size=len(blob))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    ok = _raw_upload(client, "a.tif", [blob[i:i + 4096] for i in range(0, len(blob), 4096)],
                     sha=hashlib.sha256(blob).hexdigest())
    assert ok.width == 400


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "float", "int32", "not_image"])
def test_bad_uploads_get_clear_status(client, tmp_path, case):
    path = tmp_path / ("notes.txt" if case == "not_image" else f"{case}.tif")
    if case == "truncated":
        _tiff(path, shape=(2000, 2000))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(5000))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "float":
        tifffile.imwrite(path, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    elif case == "int32":
        tifffile.imwrite(path, np.ones((64, 64), np.int32))
    else:
        path.write_text("hello")
    with pytest.raises(FosgateClientError) as err:
        client.upload_slide(path)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, str(err.value)
    assert len(str(err.value)) > 20
    _assert_serving(client)


def test_register_only_under_roots(server, client, tmp_path):
    inside = tmp_path / "roots" / "ok.tif"
    _tiff(inside)
    assert client.register_slide(str(inside)).width == 400
    outside = tmp_path / "secret.tif"
    _tiff(outside)
    link = tmp_path / "roots" / "link.tif"
    link.symlink_to(outside)
    for path in (str(outside), str(tmp_path / "roots" / ".." / "secret.tif"), str(link), "/etc/passwd"):
        with pytest.raises(FosgateClientError) as err:
            client.register_slide(path)
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED, path
    with pytest.raises(FosgateClientError) as err:
        client.register_slide(str(tmp_path / "roots" / "missing.tif"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    _assert_serving(client)


def test_unknown_ids_are_not_found(client, tmp_path):
    path = tmp_path / "a.tif"
    _tiff(path)
    slide = client.upload_slide(path)
    for call in (lambda: client.predict(slide.slide_id, "md_nope"), lambda: client.get_model("md_nope"),
                 lambda: client.get_job("jb_nope"), lambda: client.get_slide("sl_nope"),
                 lambda: client.train(["lb_nope"]), lambda: list(client.watch("jb_nope"))):
        with pytest.raises(FosgateClientError) as err:
            call()
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    _assert_serving(client)


def test_label_validation(client, tmp_path):
    img = tmp_path / "img.tif"
    _tiff(img, shape=(256, 256))
    mask = tmp_path / "mask.tif"
    m = np.zeros((128, 128), np.uint8)
    m[10:20, 10:20] = 255
    m[40:50, 60:70] = 255
    tifffile.imwrite(mask, m)
    s = client.upload_slide(img)
    ms = client.upload_slide(mask, role="mask")
    with pytest.raises(FosgateClientError) as err:  # whole image is 256x256, mask is 128x128
        client.add_label(s.slide_id, ms.slide_id)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(FosgateClientError) as err:
        client.add_label(s.slide_id, ms.slide_id, region=(200, 200, 128, 128))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    label = client.add_label(s.slide_id, ms.slide_id, region=(64, 64, 128, 128), source="human", reviewer="ana")
    assert (label.objects, label.foreground_pixels, label.reviewer) == (2, 200, "ana")
    assert [lb.label_id for lb in client.list_labels(s.slide_id)] == [label.label_id]


def test_unreachable_server_message():
    from fosgate_client.client import FosgateClient

    with FosgateClient("127.0.0.1:1", timeout=2) as c, pytest.raises(FosgateClientError) as err:
        c.check(timeout=2)
    assert "Cannot reach" in str(err.value)


def test_too_large_for_one_message_is_explained_before_sending(client, tmp_path):
    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.uint8))
    slide = client.upload_slide(tmp_path / "img.tif")
    with pytest.raises(FosgateClientError) as err:
        client.add_label(slide.slide_id, roi_zip=b"PK" + b"\0" * (17 << 20))
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 16 MB" in str(err.value)
    # and the server's own limit answers with a status, not a crash, for clients that do not check
    from fosgate.v1 import fosgate_pb2_grpc as pbg

    with pytest.raises(grpc.RpcError) as raw:
        pbg.LabelServiceStub(client.channel).AddLabel(
            pb.AddLabelRequest(slide_id=slide.slide_id, roi_zip=b"\0" * (17 << 20)), timeout=30)
    assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    client.check()
