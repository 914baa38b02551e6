"""Hostile and unlucky I/O over the real gRPC API (issue 13, items 2, 5, 6 and 8).

Every test runs a real server on 127.0.0.1 with real files. Disk-full and read-only cases run on a real
16 MiB tmpfs (``mount -t tmpfs``; skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import tifffile
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from fosgate.config import ServerConfig
from fosgate.rpc.server import start_server
from fosgate.v1 import fosgate_pb2 as pb
from fosgate.v1 import fosgate_pb2_grpc as pbg
from fosgate_client.client import FosgateClient, FosgateClientError

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# ---------------------------------------------------------------------- helpers
def strip_bomb_tiff(path: Path, width: int, height: int) -> Path:
    """A grey 8-bit TIFF with ONE deflate-compressed strip of ``width x height`` px whose data are 4 KiB of
    garbage: decoding it would either allocate the whole strip or fail as damaged."""
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0),
               (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, value in entries:
        value = data_offset if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, 1)
        out += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    out += struct.pack("<I", 0) + data
    path.write_bytes(bytes(out))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int, real_zeros: bool = False) -> Path:
    """A grey PNG declaring ``width x height``: its IDAT is either garbage (with correct CRCs) or the real,
    tiny deflate stream of an all-zero image."""
    if real_zeros:
        comp = zlib.compressobj(9)
        row = b"\0" * (width + 1)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def code_of(fn, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(FosgateClientError) as err:
        fn(*args, **kw)
    return err.value.code, str(err.value)


def health_of(address: str) -> int:
    with grpc.insecure_channel(address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def wait_for(predicate, what: str, deadline_s: float = 60.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@contextmanager
def serving(data: Path, **config):
    running = start_server(ServerConfig(data_dir=data, port=0, dask_scheduler="off", **config))
    try:
        with FosgateClient(f"127.0.0.1:{running.port}", timeout=60) as fg:
            yield running, fg
    finally:
        running.stop(grace=0.2)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fill(folder: Path) -> Path:
    """Fill the file system under ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while os.write(fd, b"\1" * size) > 0:
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def temp_files(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "tmp").iterdir()) if (data / "tmp").is_dir() else []


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB tmpfs (root in a sandbox); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def random_tiff(path: Path, shape=(64, 64), seed: int = 0) -> Path:
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return path


def mask_tiff(path: Path, shape=(64, 64)) -> Path:
    m = np.zeros(shape, np.uint8)
    m[10:20, 10:20] = 255
    tifffile.imwrite(path, m)
    return path


# ---------------------------------------------------------------------- item 2: decompression bombs
@pytest.mark.parametrize("side", [100_000, 46_341])
def test_single_strip_tiff_bomb_is_resource_exhausted_not_damaged(server, client, tmp_path, side):
    bomb = strip_bomb_tiff(tmp_path / "bomb.tif", side, side)
    assert bomb.stat().st_size < 10_000
    code, msg = code_of(client.upload_slide, bomb)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "strips" in msg and "tiled" in msg and "bfconvert" in msg and "damaged" not in msg
    # the same file by path: refused when opened, before any strip is decoded (its strip is garbage, so
    # decoding would have reported it as damaged)
    registered = Path(server.app.config.roots[0]) / "bomb.tif"
    registered.write_bytes(bomb.read_bytes())
    code, msg = code_of(client.register_slide, str(registered))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert temp_files(server.app.store.root) == []


def test_decode_bound_is_per_read_and_uncompressed_strips_are_memory_mapped(tmp_path):
    img = np.random.default_rng(0).integers(0, 65535, (1000, 1200), dtype=np.uint16)  # 2.4 MB per strip
    tifffile.imwrite(tmp_path / "imagej.tif", img, imagej=True)  # uncompressed, one strip (as Fiji saves)
    tifffile.imwrite(tmp_path / "zlib.tif", img, compression="zlib", rowsperstrip=1000)  # one compressed strip
    tifffile.imwrite(tmp_path / "tiled.tif", img, compression="zlib", tile=(256, 256))
    with serving(tmp_path / "data", max_decode_bytes=1 << 20) as (running, fg):
        code, msg = code_of(fg.upload_slide, tmp_path / "zlib.tif")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 MiB" in msg, msg
        for name in ("imagej.tif", "tiled.tif"):
            slide = fg.upload_slide(tmp_path / name)
            with running.app.open_slide(running.app.store.get_slide(slide.slide_id)) as s:
                assert isinstance(s._array, np.memmap) == (name == "imagej.tif")
                np.testing.assert_array_equal(s.read(990, 1000, 7, 1111)[..., 0], img[990:1000, 7:1111])


def test_png_bomb_is_refused_from_its_header_before_decoding(server, client, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", 20_000, 20_000)  # garbage pixels: a decode would say "damaged"
    code, msg = code_of(client.upload_slide, bomb)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "'bomb.png'" in msg and "tiled" in msg
    registered = Path(server.app.config.roots[0]) / "bomb.png"
    registered.write_bytes(bomb.read_bytes())
    code, msg = code_of(client.register_slide, str(registered))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg


def test_jpeg_bomb_is_refused_from_its_header_before_decoding(client, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 10_000, 10_000)  # declares 10000x10000 px: 100 MP, 400 MB decoded
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    code, msg = code_of(client.upload_slide, tmp_path / "bomb.jpg")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg  # a decode would have found the data damaged
    assert "10000x10000" in msg and "tiled" in msg


def test_real_png_bomb_leaves_server_memory_where_it_was(server, client, tmp_path):
    bomb = png_bomb(tmp_path / "zeros.png", 20_000, 20_000, real_zeros=True)  # 400 MB of pixels in ~400 KB
    assert bomb.stat().st_size < 2_000_000
    registered = Path(server.app.config.roots[0]) / "zeros.png"
    registered.write_bytes(bomb.read_bytes())
    import resource

    before, peak = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(3):
        assert code_of(client.upload_slide, bomb)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert code_of(client.register_slide, str(registered))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # loose: one decode needs 400 MB to 1.5 GB (the server runs in this process)
    assert rss_bytes() - before < 200 * 2**20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 200 * 2**20


def test_large_png_is_decoded_once_into_a_tiled_cache(server, client, tmp_path):
    yy, xx = np.mgrid[0:2000, 0:3000]
    rgb = np.stack([(xx % 251), (yy % 241), ((xx + yy) % 239)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.png")  # decodes to 24 MB in Pillow (> the 16 MiB cache threshold)
    slide = client.upload_slide(tmp_path / "big.png")
    assert (slide.width, slide.height, slide.channels, slide.format) == (3000, 2000, 3, "png")
    cache = server.app.store.root / "cache"
    cached = sorted(cache.glob("*.tif"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    row = server.app.store.get_slide(slide.slide_id)
    for _ in range(2):
        with server.app.open_slide(row) as s:
            assert s.path.parent == cache.resolve() and not isinstance(s._array, np.ndarray)  # lazy, not decoded
            np.testing.assert_array_equal(s.read(100, 400, 2500, 3000), rgb[100:400, 2500:3000])
    assert sorted(cache.glob("*.tif")) == cached and cached[0].stat().st_mtime_ns == stamp  # decoded once
    with tifffile.TiffFile(cached[0]) as tf:
        assert tf.pages.first.is_tiled


def test_png_cache_of_a_deleted_slide_is_removed_at_start_up(tmp_path):
    yy, xx = np.mgrid[0:2000, 0:3000]
    Image.fromarray(((xx * 7 + yy * 3) % 256).astype(np.uint8)).convert("RGB").save(tmp_path / "big.png")
    with serving(tmp_path / "data") as (running, fg):
        gone = fg.upload_slide(tmp_path / "big.png")
        (tmp_path / "kept.png").write_bytes((tmp_path / "big.png").read_bytes())
        kept = fg.upload_slide(tmp_path / "kept.png")
        assert len(list((running.app.store.root / "cache").glob("*.tif"))) == 2
        fg.delete_slide(gone.slide_id)
    with serving(tmp_path / "data") as (running, fg):
        cached = list((running.app.store.root / "cache").glob("*.tif"))
        assert len(cached) == 1
        with running.app.open_slide(running.app.store.get_slide(kept.slide_id)) as s:
            assert s.path == cached[0].resolve()


def test_roi_zip_bomb_is_refused_from_its_directory(server, client, tmp_path):
    slide = client.upload_slide(random_tiff(tmp_path / "s.tif"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("0001.roi", "w") as fh:
        for _ in range(64):
            fh.write(b"\0" * (1 << 20))  # 64 MiB of zeros in ~64 KB
    assert len(buf.getvalue()) < 1_000_000
    code, msg = code_of(client.add_label, slide.slide_id, roi_zip=buf.getvalue())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
    assert "decompress" in msg and "MiB" in msg
    assert client.list_labels() == []


# ---------------------------------------------------------------------- item 8: leaks and loose ends
def test_png_with_a_bad_chunk_crc_is_damaged(client, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    i = data.index(b"IDAT")
    length = struct.unpack(">I", data[i - 4:i])[0]
    data[i + 4 + length] ^= 0x01  # the IDAT checksum only: the pixels themselves still decode
    (tmp_path / "crc.png").write_bytes(bytes(data))
    with Image.open(tmp_path / "crc.png") as im:
        np.asarray(im)  # Pillow alone decodes it without complaint
    code, msg = code_of(client.upload_slide, tmp_path / "crc.png")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, msg
    assert "damaged" in msg and "'crc.png'" in msg


def test_errors_name_the_users_file_not_server_paths(server, client, tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", img, tile=(64, 64), compression="zlib")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "brain-3.tif").write_bytes(data[: len(data) * 2 // 3])  # truncated: header fine, tiles missing
    code, msg = code_of(client.upload_slide, tmp_path / "brain-3.tif")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, msg
    assert "'brain-3.tif'" in msg
    root = str(server.app.store.root)
    assert root not in msg and "/tmp" not in msg and "-brain-3.tif" not in msg  # no server temp name


def test_unexpected_errors_give_an_error_id_not_their_text(server, client, untrained_model, tmp_path, caplog):
    slide = client.upload_slide(random_tiff(tmp_path / "s.tif", (48, 48)))
    job = client.wait(client.predict(slide.slide_id, untrained_model).job_id, timeout=300)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.message
    artifact = job.artifacts[0]
    Path(server.app.store.get_artifact(artifact.artifact_id).path).unlink()  # the server's own file vanished
    caplog.set_level(logging.ERROR, logger="fosgate.rpc")
    code, msg = code_of(client.download_artifact, artifact, tmp_path / "out")
    assert code == grpc.StatusCode.INTERNAL
    assert "error id err_" in msg
    assert str(server.app.store.root) not in msg and "FileNotFoundError" not in msg and "Errno" not in msg
    error_id = msg.split("error id ")[1].split(")")[0]
    assert error_id in caplog.text and "FileNotFoundError" in caplog.text  # the details stay in the server log


def test_registered_file_replaced_by_a_symlink_outside_the_root_is_not_read(server, client, tmp_path):
    root = Path(server.app.config.roots[0])
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = mask_tiff(outside / "secret.tif")
    img = random_tiff(root / "img.tif")
    mask = mask_tiff(root / "mask.tif")
    slide = client.register_slide(str(img))
    mask_slide = client.register_slide(str(mask), role="mask")
    assert client.add_label(slide.slide_id, mask_slide.slide_id).objects == 1  # fine while inside
    mask.unlink()
    mask.symlink_to(secret)
    code, msg = code_of(client.add_label, slide.slide_id, mask_slide.slide_id)
    assert code == grpc.StatusCode.PERMISSION_DENIED, msg
    assert "outside the folders" in msg and str(outside) not in msg
    img.unlink()
    img.symlink_to(random_tiff(outside / "other.tif"))
    job_id = client.export_tiles(slide.slide_id).job_id
    with pytest.raises(FosgateClientError, match="outside the folders"):
        client.wait(job_id, timeout=120)
    assert client.get_job(job_id).state == pb.JOB_STATE_FAILED
    assert len(client.list_labels()) == 1


def test_token_off_loopback_needs_tls_or_insecure_token(tmp_path, caplog):
    token = "s3cret-token-0123456789abcdef"
    with pytest.raises(ValueError, match="clear text"):
        start_server(ServerConfig(data_dir=tmp_path / "d", host="0.0.0.0", port=0, auth_token=token,
                                  dask_scheduler="off"))
    caplog.set_level(logging.WARNING, logger="fosgate.server")
    running = start_server(ServerConfig(data_dir=tmp_path / "d", host="0.0.0.0", port=0, auth_token=token,
                                        insecure_token=True, dask_scheduler="off"))
    try:
        assert "INSECURE" in caplog.text and "clear text" in caplog.text
    finally:
        running.stop(grace=0.2)
    (tmp_path / "token").write_text(token)
    r = subprocess.run([sys.executable, "-m", "fosgate.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--data",
                        str(tmp_path / "d"), "--token-file", str(tmp_path / "token"), "--dask-scheduler", "off"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--insecure-token" in r.stderr, f"exit {r.returncode}: {r.stderr[-4000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_process(data: Path, port: int) -> subprocess.Popen:
    """``fosgate serve`` in its own process; should it die before it serves, the failure shows its exit
    status and stderr (with the crashing stack: serve enables faulthandler)."""
    err = data.parent / "serve.stderr"
    with err.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "fosgate.cli", "serve", "--port", str(port), "--data",
                                 str(data), "--dask-scheduler", "off"], stdout=subprocess.PIPE, stderr=err_file,
                                text=True)
    line = proc.stdout.readline()
    if "serving" not in line:  # stdout closed: the process has ended or is ending
        pytest.fail(f"fosgate serve did not start (exit {proc.wait(timeout=30)}): {err.read_text()[-4000:]}")
    return proc


def test_kill_9_leftovers_are_cleaned_at_start_up(tmp_path):
    data, port = tmp_path / "data", _free_port()
    proc = _start_process(data, port)
    stop = threading.Event()
    try:
        with FosgateClient(f"127.0.0.1:{port}", timeout=30) as fg:
            slide = fg.upload_slide(random_tiff(tmp_path / "s.tif"))
            label = fg.add_label(slide.slide_id, fg.upload_slide(mask_tiff(tmp_path / "m.tif"), role="mask").slide_id)
        first = (tmp_path / "s.tif").read_bytes()

        def slow_upload():
            def requests():
                yield pb.UploadSlideRequest(header=pb.UploadSlideHeader(name="big.tif", size_bytes=50 << 20))
                yield pb.UploadSlideRequest(chunk=first + b"\0" * ((1 << 20) - len(first)))
                while not stop.is_set():
                    yield pb.UploadSlideRequest(chunk=b"\0" * (1 << 20))
                    time.sleep(0.05)

            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, contextlib.suppress(grpc.RpcError):
                pbg.SlideServiceStub(ch).UploadSlide(requests(), timeout=60)

        t = threading.Thread(target=slow_upload)
        t.start()
        wait_for(lambda: any(p.is_file() and p.stat().st_size > (2 << 20) for p in (data / "tmp").rglob("*")),
                 "a partial upload")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        stop.set()
    t.join(timeout=30)
    # what a kill -9 mid-write also leaves: a label file without its row, a job's .work folder and .part file,
    # a slide folder whose row was never committed
    (data / "labels" / "lb_000000000000.tif").write_bytes(b"partial")
    job_dir = data / "jobs" / "jb_000000000000"
    (job_dir / ".s.work").mkdir(parents=True)
    (job_dir / ".s.work" / "prob.zarr").write_bytes(b"x")
    (job_dir / "s.mask.ome.tif.part").write_bytes(b"x")
    (job_dir / "s.counts.csv").write_text("kept: a finished output\n")
    (data / "slides" / "sl_000000000000").mkdir()
    (data / "slides" / "sl_000000000000" / "x.tif").write_bytes(b"x")
    assert temp_files(data)
    proc = _start_process(data, port)
    try:
        assert temp_files(data) == []
        assert not (data / "labels" / "lb_000000000000.tif").exists()
        assert not (job_dir / ".s.work").exists() and not (job_dir / "s.mask.ome.tif.part").exists()
        assert (job_dir / "s.counts.csv").exists()
        assert not (data / "slides" / "sl_000000000000").exists()
        assert (data / "labels" / f"{label.label_id}.tif").exists()
        with FosgateClient(f"127.0.0.1:{port}", timeout=30) as fg:
            assert [lb.label_id for lb in fg.list_labels()] == [label.label_id]
            assert slide.slide_id in {s.slide_id for s in fg.list_slides()}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_a_native_crash_of_the_server_leaves_its_python_stack_on_stderr(tmp_path):
    """A segmentation fault (here sent by hand) ends ``fosgate serve`` with its Python stack on stderr, not
    silently: faulthandler is on from the first line of the command."""
    data, port = tmp_path / "data", _free_port()
    proc = _start_process(data, port)
    proc.send_signal(signal.SIGSEGV)
    assert proc.wait(timeout=60) == -signal.SIGSEGV
    proc.stdout.close()
    err = (tmp_path / "serve.stderr").read_text()
    assert "Fatal Python error: Segmentation fault" in err and "Thread" in err, err[-2000:]


# ---------------------------------------------------------------------- item 5: header check and quota
def test_junk_upload_is_refused_before_the_rest_is_sent(server, tmp_path):
    released = threading.Event()
    sent_all = threading.Event()

    def requests():
        yield pb.UploadSlideRequest(header=pb.UploadSlideHeader(name="junk.tif", size_bytes=30 << 20))
        yield pb.UploadSlideRequest(chunk=b"this is not an image " * 50_000)  # ~1 MiB
        if released.wait(timeout=60):
            return
        for _ in range(29):  # only reached if the server waited for the whole 30 MiB
            yield pb.UploadSlideRequest(chunk=b"\0" * (1 << 20))
        sent_all.set()

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch, pytest.raises(grpc.RpcError) as err:
        pbg.SlideServiceStub(ch).UploadSlide(requests(), timeout=120)
    released.set()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "'junk.tif'" in err.value.details() and "TIFF, PNG or JPEG" in err.value.details()
    assert not sent_all.is_set()
    assert temp_files(server.app.store.root) == []


def test_png_named_tif_is_refused_from_its_header(client, tmp_path):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "x.tif").write_bytes((tmp_path / "x.png").read_bytes())
    code, msg = code_of(client.upload_slide, tmp_path / "x.tif")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "PNG" in msg


def test_data_quota_refuses_uploads_with_a_sentence(tmp_path):
    big = random_tiff(tmp_path / "big.tif", (1200, 1000))  # 1.2 MB of noise
    with serving(tmp_path / "data", max_data_bytes=2_000_000) as (running, fg):
        first = fg.upload_slide(big)
        code, msg = code_of(fg.upload_slide, big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
        assert "quota" in msg and "--max-data-gb" in msg
        assert temp_files(running.app.store.root) == []
        fg.delete_slide(first.slide_id)
        fg.upload_slide(big)  # room again after a deletion


def test_data_quota_flag(tmp_path):
    from fosgate.cli import build_parser

    args = build_parser().parse_args(["serve", "--max-data-gb", "1.5"])
    assert args.max_data_gb == 1.5


@pytest.mark.parametrize(("exc", "status"), [
    (OSError(errno.ENOSPC, "No space left on device", "/srv/data/tmp/x"), "RESOURCE_EXHAUSTED"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/srv/data/tmp/x"), "RESOURCE_EXHAUSTED"),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/data/tmp/x"), "FAILED_PRECONDITION"),
    (OSError(errno.EROFS, "Read-only file system", "/srv/data/tmp/x"), "FAILED_PRECONDITION"),
    (sqlite3.OperationalError("database or disk is full"), "RESOURCE_EXHAUSTED"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "FAILED_PRECONDITION"),
    (FileNotFoundError(errno.ENOENT, "No such file", "/srv/data/x"), "INTERNAL"),
])
def test_os_errors_map_to_a_status_and_a_sentence_without_paths(exc, status):
    # EACCES cannot be provoked on a real disk here (tests run as root), so the mapping itself is checked
    from fosgate.rpc.errors import status_for

    code, message = status_for(exc)
    assert code.name == status
    assert "/srv" not in message and "Errno" not in message and message.endswith(".")


# ---------------------------------------------------------------------- item 6: full and read-only disks
def test_full_disk_gives_resource_exhausted_health_and_deletion_frees_space(small_disk, tmp_path):
    data = small_disk / "data"
    big = random_tiff(tmp_path / "big.tif", (4000, 5000))  # 20 MB: more than the whole disk
    with serving(data) as (running, fg):
        address = f"127.0.0.1:{running.port}"
        slide = fg.upload_slide(random_tiff(tmp_path / "s.tif"))
        mask = fg.upload_slide(mask_tiff(tmp_path / "m.tif"), role="mask")
        spare = fg.upload_slide(random_tiff(tmp_path / "spare.tif", (1000, 1000), seed=3))
        code, msg = code_of(fg.upload_slide, big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
        assert "disk is full" in msg and str(data) not in msg
        assert temp_files(data) == []
        assert health_of(address) == SERVING
        filler = fill(small_disk)
        wait_for(lambda: health_of(address) == NOT_SERVING, "health NOT_SERVING on a full disk")
        code, msg = code_of(fg.add_label, slide.slide_id, mask.slide_id)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, msg
        assert temp_files(data) == []
        assert code_of(fg.upload_slide, tmp_path / "s.tif")[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert temp_files(data) == []
        fg.delete_slide(spare.slide_id)  # deleting works on a full disk and frees its space
        assert spare.slide_id not in {s.slide_id for s in fg.list_slides()}
        filler.unlink()
        wait_for(lambda: health_of(address) == SERVING, "health SERVING again")
        fg.add_label(slide.slide_id, mask.slide_id)


def test_server_starts_on_a_full_disk_and_lets_users_delete(small_disk, tmp_path):
    data = small_disk / "data"
    with serving(data) as (_, fg):
        keep = fg.upload_slide(random_tiff(tmp_path / "s.tif"))
        spare = fg.upload_slide(random_tiff(tmp_path / "spare.tif", (1000, 1000), seed=3))
    filler = fill(small_disk)
    try:
        with serving(data) as (running, fg):
            address = f"127.0.0.1:{running.port}"
            assert {s.slide_id for s in fg.list_slides()} == {keep.slide_id, spare.slide_id}
            fg.delete_slide(spare.slide_id)  # the start-up used the reserve so that the database could open
            assert {s.slide_id for s in fg.list_slides()} == {keep.slide_id}
            wait_for(lambda: health_of(address) == SERVING, "health SERVING after the deletion")
    finally:
        filler.unlink()


def test_read_only_data_folder_starts_read_only_and_recovers(small_disk, tmp_path):
    data = small_disk / "data"
    with serving(data) as (_, fg):
        keep = fg.upload_slide(random_tiff(tmp_path / "s.tif"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with serving(data) as (running, fg):
        address = f"127.0.0.1:{running.port}"
        assert health_of(address) == NOT_SERVING
        assert [s.slide_id for s in fg.list_slides()] == [keep.slide_id]  # reading still works
        code, msg = code_of(fg.upload_slide, tmp_path / "s.tif")
        assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
        assert "data folder cannot be written" in msg and str(data) not in msg
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        wait_for(lambda: health_of(address) == SERVING, "health SERVING once the folder is writable")
        fg.upload_slide(tmp_path / "s.tif")
        assert len(fg.list_slides()) == 2


def test_data_folder_without_write_permission_is_failed_precondition_until_fixed(tmp_path):
    """A real EACCES: the server runs without root's capabilities (no CAP_DAC_OVERRIDE) on a data folder whose
    modes let it read but not write. (Running it as 'nobody' instead fails where the interpreter lives under a
    private /root, e.g. pyenv.)"""
    import shutil
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the server without write permission")
    base = Path(tempfile.mkdtemp(prefix="fosgate-eacces-", dir="/tmp"))

    def set_modes(writable: bool) -> None:
        for p in sorted([data, *data.rglob("*")], key=lambda p: len(p.parts), reverse=writable):
            p.chmod((0o755 if p.is_dir() else 0o644) if writable else (0o555 if p.is_dir() else 0o444))

    try:
        base.chmod(0o755)
        data = base / "data"
        with serving(data) as (_, fg):
            keep = fg.upload_slide(random_tiff(tmp_path / "s.tif"))
        set_modes(writable=False)
        port = _free_port()
        proc = subprocess.Popen(["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
                                 sys.executable, "-m", "fosgate.cli", "serve", "--port", str(port), "--data",
                                 str(data), "--dask-scheduler", "off"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert "serving" in line, f"exit {proc.poll()}: " + (proc.stderr.read() if proc.poll() is not None else line)
            address = f"127.0.0.1:{port}"
            with FosgateClient(address, timeout=30) as fg:
                assert health_of(address) == NOT_SERVING
                assert [s.slide_id for s in fg.list_slides()] == [keep.slide_id]
                code, msg = code_of(fg.upload_slide, tmp_path / "s.tif")
                assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
                assert "data folder cannot be written" in msg and str(data) not in msg
                set_modes(writable=True)
                wait_for(lambda: health_of(address) == SERVING, "health SERVING once the folder is writable")
                fg.upload_slide(tmp_path / "s.tif")
                assert len(fg.list_slides()) == 2
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_jobs_interrupted_while_the_disk_is_read_only_never_stay_queued(small_disk, tmp_path):
    from fosgate.store.db import Store

    data = small_disk / "data"
    store = Store(data)  # what a killed server leaves: a queued and a running job
    queued = store.add_job("predict", {"slide_id": "sl_x"}).id
    running_id = store.add_job("train", {}).id
    store.update_job(running_id, state="running")
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with serving(data) as (running, fg):
        for job_id in (queued, running_id):
            job = fg.get_job(job_id)
            assert job.state == pb.JOB_STATE_FAILED and "stopped before this job finished" in job.message
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        address = f"127.0.0.1:{running.port}"
        wait_for(lambda: health_of(address) == SERVING, "health SERVING")
        wait_for(lambda: running.app.store.get_job(queued).state == "failed", "the failure written to the database")
    assert Store(data).get_job(running_id).state == "failed"


def test_jobs_end_failed_when_the_disk_fills_while_they_run(small_disk, tmp_path):
    data = small_disk / "data"
    with serving(data, job_workers=1) as (running, fg):
        slide = fg.upload_slide(random_tiff(tmp_path / "s.tif", (64, 64)))
        mask = fg.upload_slide(mask_tiff(tmp_path / "m.tif"), role="mask")
        label = fg.add_label(slide.slide_id, mask.slide_id)
        train = fg.train([label.label_id], epochs=1000, tile_size=32, batch_size=2)
        wait_for(lambda: fg.get_job(train.job_id).state == pb.JOB_STATE_RUNNING, "training running")
        export = fg.export_tiles(slide.slide_id, tile_size=16, margin=0)  # queued behind the training
        filler = fill(small_disk)
        try:
            fg.cancel(train.job_id)
            for job_id in (train.job_id, export.job_id):
                job = wait_for(lambda j=job_id: (lambda x: x if x.state not in (pb.JOB_STATE_QUEUED,
                                                                                 pb.JOB_STATE_RUNNING) else None)(
                    fg.get_job(j)), f"job {job_id} final", deadline_s=180)
                if job_id == export.job_id:  # nothing fits on the disk: it fails, with the disk's sentence
                    assert job.state == pb.JOB_STATE_FAILED and "disk is full" in job.message, job.message
                else:
                    assert job.state in (pb.JOB_STATE_CANCELLED, pb.JOB_STATE_FAILED), job.message
                assert "error id" not in job.message and str(data) not in job.message, job.message
        finally:
            filler.unlink()
        wait_for(lambda: health_of(f"127.0.0.1:{running.port}") == SERVING, "health SERVING")
        wait_for(lambda: all(running.app.store.get_job(j).final for j in (train.job_id, export.job_id)),
                 "final states in the database")
        leftovers = [p for p in (data / "jobs").rglob("*") if p.name.endswith((".part", ".work"))]
        assert leftovers == [] and temp_files(data) == []
