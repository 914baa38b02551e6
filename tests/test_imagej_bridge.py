"""The ImageJ bridge through scyjava + Debian's ij.jar, in a subprocess (own JVM) under xvfb-run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile
from test_fiji_macros import model_id  # noqa: F401  (fixture)

JAVA = shutil.which("java")
XVFB = shutil.which("xvfb-run")
HAVE = importlib.util.find_spec("scyjava") is not None and os.path.exists("/usr/share/java/ij.jar")

pytestmark = [pytest.mark.imagej, pytest.mark.skipif(not (HAVE and JAVA and XVFB),
                                                     reason="needs scyjava (imagej extra), ij.jar and xvfb-run")]

SCRIPT = r"""
import json, sys
import numpy as np
import tifffile
from fosgate_client.client import FosgateClient
from fosgate_client.imagej import ImageJBridge

address, model_id, image_path = sys.argv[1:4]
bridge = ImageJBridge.start()
out = {}
rng = np.random.default_rng(0)
for dtype in (np.uint8, np.uint16, np.float32):
    a = (rng.random((7, 5)) * 200).astype(dtype)
    out[np.dtype(dtype).name] = bool((bridge.from_imageplus(bridge.to_imageplus(a)) == a).all())
rgb = rng.integers(0, 255, (6, 4, 3), dtype=np.uint8)
out["rgb"] = bool((bridge.from_imageplus(bridge.to_imageplus(rgb)) == rgb).all())
imp = bridge.to_imageplus(tifffile.imread(image_path), "cells")
with FosgateClient(address) as fg:
    out["count"] = bridge.segment(fg, model_id, imp)
    out["overlay"] = int(imp.getOverlay().size())
    label = bridge.send_roi_manager(fg, imp, reviewer="bridge")
    out["label_objects"] = int(label.objects)
    out["label_id"] = label.label_id
print(json.dumps(out))
"""


def test_bridge_round_trips_and_segments(server, client, model_id, tmp_path):  # noqa: F811
    from test_end_to_end import discs

    img, _ = discs((240, 200), 20, seed=5)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    script = tmp_path / "bridge.py"
    script.write_text(SCRIPT)
    java_home = str(Path(os.path.realpath(JAVA)).parents[1])
    env = dict(os.environ, JAVA_HOME=os.environ.get("JAVA_HOME", java_home), HOME=str(tmp_path))
    proc = subprocess.run([XVFB, "-a", sys.executable, str(script), f"127.0.0.1:{server.port}", model_id,
                           str(tmp_path / "cells.tif")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uint8"] and out["uint16"] and out["float32"] and out["rgb"]
    jobs = [j for j in client.list_jobs() if j.kind == "predict"]
    assert out["count"] == out["overlay"] == int(jobs[-1].metrics["count"]) > 3
    assert out["label_objects"] == out["count"]
