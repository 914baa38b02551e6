"""Quiet, informative terminals: `fosgate serve` and a client's `fosgate predict` print fosgate's own
messages and progress bars only; Dask, TensorFlow, absl and Keras lines go to <data>/server.log."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile
from test_end_to_end import discs

FOSGATE = str(Path(sys.executable).with_name("fosgate"))
LIBRARY_LINE = re.compile(r"distributed\.|\bINFO\b|tensorflow|\babsl\b|\bkeras\b|Warning:|I0000|W0000", re.I)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_untrained_model(data: Path) -> str:
    """A random reference U-Net written into a (not yet served) data folder, as conftest's fixture does."""
    from fosgate.core.modelio import ModelMeta, save_model
    from fosgate.core.normalize import Normalization
    from fosgate.core.unet import build_unet, receptive_field_radius
    from fosgate.store.db import ModelRow, Store, new_id, now

    store = Store(data)
    try:
        model = build_unet(1, seed=0)
        model_id = new_id("md")
        meta = ModelMeta(model_id, "random", 1, now(), 1, Normalization().to_json(), receptive_field_radius(model), 128)
        directory = save_model(model, meta, store.model_dir(model_id))
        store.add_model(ModelRow(model_id, "random", 1, str(directory), meta.to_dict(), meta.created, ""))
    finally:
        store.close()
    return model_id


def library_lines(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", text) if LIBRARY_LINE.search(line)]


def test_serve_and_predict_terminals_are_quiet_and_the_log_file_has_the_libraries(tmp_path):
    data = tmp_path / "data"
    model_id = add_untrained_model(data)
    img, _ = discs((160, 200), 12, seed=4)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    port = free_port()
    out, err = open(tmp_path / "serve.out", "w+"), open(tmp_path / "serve.err", "w+")  # noqa: SIM115 - closed below
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # fosgate must quieten TensorFlow itself
    server = subprocess.Popen([FOSGATE, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)],
                              stdout=out, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in (tmp_path / "serve.out").read_text():
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.err").read_text()
            time.sleep(0.2)
        proc = subprocess.run([FOSGATE, "predict", "--server", f"127.0.0.1:{port}", "--model", model_id,
                               "--min-size", "1", "--out", str(tmp_path / "out"), str(tmp_path / "cells.tif")],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        out.close()
        err.close()
    serve_text = (tmp_path / "serve.out").read_text() + (tmp_path / "serve.err").read_text()
    assert library_lines(serve_text) == [], serve_text[-3000:]
    assert library_lines(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]
    assert "fosgate serving on 127.0.0.1" in serve_text
    # the prediction's progress bar shows elapsed time and an ETA
    assert re.search(r"Predicting cells\.tif: +\d+%\|.*\| \[\d\d:\d\d<", proc.stderr)
    assert "cells.tif:" in proc.stdout and "cells" in proc.stdout
    log = (data / "server.log").read_text()
    assert re.search(r" INFO distributed\.", log), log[-2000:]
    assert "fosgate.server" in log


def test_client_commands_show_fosgate_errors_without_library_noise(tmp_path):
    proc = subprocess.run([FOSGATE, "models", "--server", "127.0.0.1:9", "--timeout", "2"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "Cannot reach the fosgate server at 127.0.0.1:9" in proc.stderr
    assert library_lines(proc.stdout + proc.stderr) == []


@pytest.mark.parametrize("verbose", [False, True])
def test_setup_logging_routes_library_records(tmp_path, verbose):
    import logging

    from fosgate.logs import setup_logging

    root = logging.getLogger()
    before = list(root.handlers)
    try:
        log = setup_logging(verbose, tmp_path / "server.log")
        lib = logging.getLogger("distributed.scheduler")
        lib.addHandler(logging.StreamHandler(sys.stderr))  # as distributed does on import
        lib.propagate = False
        from fosgate.logs import route_library_logs

        route_library_logs()
        own = [h for h in root.handlers if getattr(h, "_fosgate", False) and not isinstance(h, logging.FileHandler)]
        assert len(own) == 1
        term = own[0]
        rec = logging.LogRecord("distributed.scheduler", logging.WARNING, __file__, 1, "lib says", None, None)
        mine = logging.LogRecord("fosgate.jobs", logging.INFO, __file__, 1, "mine", None, None)
        assert not term.filter(rec)
        assert bool(term.filter(mine)) is verbose
        lib.info("scheduler started")
        for h in root.handlers:
            h.flush()
        assert "INFO distributed.scheduler" in log.read_text()
        # no terminal handler is left (distributed's in-memory DequeHandlers for its dashboard may stay)
        assert lib.propagate
        assert not [h for h in lib.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()
        logging.captureWarnings(False)


@pytest.mark.slow
def test_demo_runs_end_to_end_quietly(tmp_path):
    """The README's first command (`fosgate demo`) at a small size: the default net (unet2) finds the
    generator's cells (object F1 > 0.5; it counted 0 before the logits loss), every output written, the summary
    printed, and no library line on the terminal (they go to server-data/server.log)."""
    out = tmp_path / "demo"
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([FOSGATE, "demo", "--out", str(out), "--size", "1024"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert library_lines(proc.stdout + proc.stderr) == [], (proc.stdout + proc.stderr)[-3000:]
    for suffix in ("mask.ome.tif", "labels.ome.tif", "rois.zip", "geojson", "counts.csv", "overlay.png"):
        assert (out / f"sample_slide.{suffix}").stat().st_size > 0, suffix
    assert re.search(r"\(unet2\): validation object F1 \d\.\d{3}", proc.stdout), proc.stdout
    f1 = re.search(r"objects vs the generator's ground truth \(\d+ cells\): F1 (\d\.\d+)", proc.stdout)
    assert f1 and float(f1.group(1)) > 0.5, proc.stdout
    m = re.search(r"counted (\d+) c-fos positive cells on the 1024x1024 px slide in \d+ s", proc.stdout)
    assert m, proc.stdout
    counts = (out / "sample_slide.counts.csv").read_text().strip().splitlines()
    assert len(counts) - 2 == int(m.group(1)) and counts[-1].startswith("total")  # header, a row per cell, total
    assert re.search(r"Training U-Net: +\d+%\|", proc.stderr)  # progress bars on the terminal
    assert " INFO " in (out / "server-data" / "server.log").read_text()
