"""The QuPath side's Groovy client core on Debian's groovy + grpc-java against a live server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tifffile
from test_end_to_end import discs
from test_fiji_macros import model_id  # noqa: F401  (fixture)
from test_review_clients import proposals  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
QUPATH = ROOT / "clients" / "qupath"
NEEDED = ["groovy", "protoc", "javac"]
HAVE = all(shutil.which(t) for t in NEEDED) and os.path.exists("/usr/share/java/grpc-api.jar") and (
    shutil.which("grpc_java_plugin") or shutil.which("protoc-gen-grpc-java"))

pytestmark = [pytest.mark.java, pytest.mark.skipif(not HAVE, reason="needs groovy, protoc, the grpc-java plugin and "
                                                                    "Debian's grpc-java jars")]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stubs")
    proc = subprocess.run([str(QUPATH / "build_stubs.sh"), str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "fosgate-v1-stubs.jar"


def groovy(stubs: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FOSGATE_STUBS_JAR=str(stubs))
    return subprocess.run([str(QUPATH / "run_groovy.sh"), str(QUPATH / "fosgate_cli.groovy"), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_groovy_client_uploads_predicts_watches_and_fetches_geojson(server, client, model_id, stubs,  # noqa: F811
                                                                   tmp_path):
    img, _ = discs((256, 230), 20, seed=8)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    # two region annotations (top and bottom halves) inside a whole-image parent: counted on the server
    def feature(name, x0, y0, x1, y1):
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation", "name": name}}

    fc = {"type": "FeatureCollection", "features": [feature("slice", 0, 0, 230, 256), feature("top", 0, 0, 230, 128),
                                                    feature("bottom", 0, 128, 230, 256)]}
    (tmp_path / "regions.geojson").write_text(json.dumps(fc))
    proc = groovy(stubs, f"127.0.0.1:{server.port}", model_id, str(tmp_path / "cells.tif"), str(tmp_path / "out"),
                  str(tmp_path / "regions.geojson"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    progress = [int(line.split("=")[1].split()[0]) for line in lines if line.startswith("progress=")]
    assert progress and progress == sorted(progress) and progress[-1] == 100
    kv = dict(line.split("=", 1) for line in lines if not line.startswith("progress="))
    job = [j for j in client.list_jobs() if j.kind == "predict"][-1]
    assert int(kv["count"]) == int(job.metrics["count"]) > 3
    fc = json.loads(Path(kv["geojson"]).read_text())
    assert len(fc["features"]) == int(kv["count"])
    assert all(f["properties"]["objectType"] == "detection" for f in fc["features"])
    import csv

    rows = {r["name"]: r for r in csv.DictReader(Path(kv["regions_csv"]).read_text().splitlines())}
    ys = [f["properties"]["measurements"]["Centroid Y px"] + 0.5 for f in fc["features"]]
    assert int(rows["top"]["cells"]) == sum(y <= 128 for y in ys)
    assert int(rows["bottom"]["cells"]) == sum(y >= 128 for y in ys)
    assert int(rows["slice"]["cells"]) == len(ys) and rows["top"]["parent_id"] == rows["slice"]["region_id"]


@pytest.mark.parametrize("case", ["unreachable", "unknown_model"])
def test_groovy_client_reports_errors_plainly(server, stubs, tmp_path, case):
    img, _ = discs((64, 64), 3, seed=1)
    tifffile.imwrite(tmp_path / "c.tif", img)
    address = "127.0.0.1:9" if case == "unreachable" else f"127.0.0.1:{server.port}"
    proc = groovy(stubs, address, "md_nope", str(tmp_path / "c.tif"), str(tmp_path / "out"))
    assert proc.returncode == 2
    error = proc.stdout.strip().splitlines()[-1]
    expected = "Cannot reach the fosgate server at 127.0.0.1:9" if case == "unreachable" else "no model with id 'md_nope'"
    assert error.startswith("error=") and expected in error


def review(stubs: Path, *args: str) -> tuple[int, dict[str, str], list[str]]:
    env = dict(os.environ, FOSGATE_STUBS_JAR=str(stubs))
    proc = subprocess.run([str(QUPATH / "run_groovy.sh"), str(QUPATH / "review_cli.groovy"), *args],
                          capture_output=True, text=True, timeout=600, env=env)
    lines = proc.stdout.strip().splitlines()
    kv = dict(line.split("=", 1) for line in lines if "=" in line and "\t" not in line)
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    return proc.returncode, kv, lines


def test_groovy_review_list_fetch_replace_accept_reject(server, client, proposals, stubs, tmp_path):  # noqa: F811
    from fosgate_client.v1 import fosgate_pb2 as pb

    slide_id, _, props = proposals
    addr = f"127.0.0.1:{server.port}"
    rc, kv, _ = review(stubs, addr, "slide", "slide.tif")
    assert rc == 0 and kv["slide"] == slide_id
    rc, _, lines = review(stubs, addr, "list", slide_id)
    assert rc == 0 and [line.split("\t")[0] for line in lines] == [p.proposal_id for p in props]
    # fetch the next one, as QuPath_Review_Proposals.groovy does, skipping the first
    rc, kv, _ = review(stubs, addr, "next", slide_id, str(tmp_path / "t"), props[0].proposal_id)
    assert rc == 0 and kv["proposal"] == props[1].proposal_id and kv["pending"] == str(len(props))
    fc = json.loads(Path(kv["geojson"]).read_text())
    assert len(fc["features"]) == props[1].objects >= 2
    assert tifffile.imread(kv["image"]).shape == (128, 128)
    # the reviewer deletes one cell and sends the rest back (slide coordinates, a bare list as QuPath writes it)
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(fc["features"][1:]))
    rc, kv, _ = review(stubs, addr, "replace", props[1].proposal_id, str(edited), "ana")
    assert rc == 0 and kv["state"] == "replaced" and int(kv["objects"]) == props[1].objects - 1
    rc, kv, _ = review(stubs, addr, "accept", props[0].proposal_id, "ana")
    assert rc == 0 and kv["state"] == "accepted" and kv["label"].startswith("lb_")
    rc, kv, _ = review(stubs, addr, "reject", props[2].proposal_id, "bo")
    assert rc == 0 and kv["state"] == "rejected" and kv["label"] == ""
    after = {p.proposal_id: p for p in client.list_proposals(slide_id=slide_id)}
    assert after[props[0].proposal_id].state == pb.PROPOSAL_STATE_ACCEPTED
    assert after[props[1].proposal_id].state == pb.PROPOSAL_STATE_REPLACED
    assert after[props[2].proposal_id].state == pb.PROPOSAL_STATE_REJECTED and after[props[2].proposal_id].reviewer == "bo"
    label = next(lb for lb in client.list_labels() if lb.label_id == after[props[1].proposal_id].label_id)
    assert label.reviewer == "ana" and label.source == pb.LABEL_SOURCE_HUMAN
    rc, kv, _ = review(stubs, addr, "list", slide_id, "pending")
    assert rc == 0
    rc, kv, _ = review(stubs, addr, "accept", "pr_nope", "ana")
    assert rc == 2 and "pr_nope" in kv["error"]


def test_qupath_scripts_parse(stubs):
    """The QuPath scripts cannot run without QuPath; at least Groovy parses them (syntax, no class lookup)."""
    check = ("import org.codehaus.groovy.control.*\n"
             "args.each { f -> def cu = new CompilationUnit(); cu.addSource(new File(f)); "
             "cu.compile(Phases.CONVERSION); println \"parsed=\" + f }\n")
    script = Path(str(stubs)).with_name("parse_check.groovy")
    script.write_text(check)
    files = sorted(str(p) for p in QUPATH.glob("QuPath_*.groovy"))
    env = dict(os.environ, FOSGATE_STUBS_JAR=str(stubs))
    proc = subprocess.run([str(QUPATH / "run_groovy.sh"), str(script), *files], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("parsed=") == len(files) >= 4
