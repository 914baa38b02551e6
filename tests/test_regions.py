"""Cells per brain region (fosgate.core.regions, the CountRegions RPC, Predict with regions, the CLI),
checked against counts computed independently here: full-resolution rasters and subtree sums for atlas
label maps, a ray-casting point-in-polygon test and the shoelace area for drawn polygons."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import roifile
import tifffile

from conftest import register_untrained_model, start_test_server
from fosgate.core.regions import (
    LabelRegions,
    count_regions,
    parse_names_table,
    parse_polygon_regions,
    write_regions_csv,
)
from fosgate.errors import InvalidInput

# ---------------------------------------------------------------------- independent reference helpers
BIG = 484682470  # a real Allen CCFv3 id: label maps need 32 bits


def allen_ontology() -> dict:
    """A small Allen-style structure graph: root > grey > (Isocortex > MO, SS), (HPF > CA1, DG, BIG)."""
    def s(i, name, acr, children=(), parent=None, color="000000"):
        return {"id": i, "name": name, "acronym": acr, "parent_structure_id": parent, "color_hex_triplet": color,
                "children": list(children)}

    return {"msg": [s(997, "root", "root", [
        s(8, "Basic cell groups and regions", "grey", [
            s(315, "Isocortex", "Isocortex", [s(500, "Somatomotor areas", "MO", parent=315, color="1F9D5A"),
                                               s(453, "Somatosensory areas", "SS", parent=315, color="188064")],
              parent=8, color="70FF71"),
            s(1089, "Hippocampal formation", "HPF", [s(382, "Field CA1", "CA1", parent=1089, color="7ED04B"),
                                                     s(726, "Dentate gyrus", "DG", parent=1089, color="7ED04C"),
                                                     s(BIG, "Some deep id", "DEEP", parent=1089, color="102030")],
              parent=8, color="7ED04A")], parent=997, color="BFDAE3")], color="FFFFFF")]}


def descendants(node: dict) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}

    def walk(n) -> set[int]:
        ids = {n["id"]}
        for c in n["children"]:
            ids |= walk(c)
        out[n["id"]] = ids
        return ids

    walk(node)
    return out


def atlas_map(scale: int = 4, h: int = 75, w: int = 100) -> np.ndarray:
    """A downsampled atlas: Isocortex painted at its own level too, several leaves, background 0."""
    m = np.zeros((h, w), np.uint32)
    m[5:35, 5:95] = 315
    m[5:35, 5:40] = 500
    m[5:35, 40:70] = 453
    m[40:70, 10:50] = 382
    m[40:70, 50:80] = 726
    m[45:60, 82:95] = BIG
    return m


def random_cells(n: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.4, w - 0.6, n), rng.uniform(-0.4, h - 0.6, n)


def inside_polygon(x: float, y: float, ring: list[tuple[float, float]]) -> bool:
    """Even-odd ray casting (no shapely)."""
    inside = False
    n = len(ring)
    for i in range(n):
        (x1, y1), (x2, y2) = ring[i], ring[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def on_border(x: float, y: float, ring: list[tuple[float, float]]) -> bool:
    """The point lies on an edge (borders belong to their regions)."""
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if abs((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) < 1e-9 and min(x1, x2) <= x <= max(x1, x2) \
                and min(y1, y2) <= y <= max(y1, y2):
            return True
    return False


def shoelace(ring: list[tuple[float, float]]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True))) / 2


def read_table(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


# ---------------------------------------------------------------------- label map + Allen ontology
def test_atlas_label_map_counts_rollup_areas_and_densities(tmp_path):
    scale, px_um = 4, 0.65
    amap = atlas_map(scale)
    h, w = amap.shape[0] * scale, amap.shape[1] * scale
    path = tmp_path / "atlas.tif"
    tifffile.imwrite(path, amap, compression="zlib", tile=(16, 16))
    onto = allen_ontology()
    regions = LabelRegions(path, parse_names_table(json.dumps(onto).encode()))
    xs, ys = random_cells(3000, h, w, seed=1)
    counts = count_regions(regions, xs, ys, slide_hw=(h, w), pixel_size_um=px_um)
    out = write_regions_csv(tmp_path / "s.regions.csv", counts)
    table = read_table(out)

    # independent: full-resolution raster, the cell's pixel by rounding its centroid, subtree sums
    full = np.kron(amap, np.ones((scale, scale), np.uint32))
    cell_label = full[np.floor(ys + 0.5).astype(int), np.floor(xs + 0.5).astype(int)]
    subtree = descendants(onto["msg"][0])
    names = {}

    def walk(n):
        names[n["id"]] = n["name"]
        for c in n["children"]:
            walk(c)

    walk(onto["msg"][0])
    for rid, ids in subtree.items():
        if not np.isin(full, list(ids)).any():
            assert names[rid] not in table  # regions absent from the map are left out
            continue
        row = table[names[rid]]
        cells = int(np.isin(cell_label, list(ids)).sum())
        area = int(np.isin(full, list(ids)).sum())
        assert int(row["cells"]) == cells, names[rid]
        assert int(row["cells_own"]) == int((cell_label == rid).sum()), names[rid]
        assert float(row["area_px"]) == pytest.approx(area)
        mm2 = area * px_um**2 / 1e6
        assert float(row["area_mm2"]) == pytest.approx(mm2, rel=1e-5)
        assert float(row["density_per_mm2"]) == pytest.approx(cells / mm2, rel=1e-3)
    # the roll-up: a parent counts its children's cells, here also its own painted pixels
    iso = table["Isocortex"]
    assert int(iso["cells"]) == int(iso["cells_own"]) + int(table["Somatomotor areas"]["cells"]) + int(
        table["Somatosensory areas"]["cells"])
    assert int(iso["cells_own"]) > 0
    assert table["Field CA1"]["parent_id"] == "1089" and table["root"]["parent_id"] == ""
    assert int(table["root"]["cells"]) == int((cell_label > 0).sum())
    assert int(table["outside all regions"]["cells"]) == int((cell_label == 0).sum()) > 0
    assert int(table["Some deep id"]["cells"]) > 0


def test_label_map_with_names_csv_and_rgb_colours(tmp_path):
    """A QuickNII/VisuAlign-style RGB picture: colours looked up in the names table's colour column."""
    onto = allen_ontology()
    colours = {}

    def walk(n, parent):
        colours[n["id"]] = (n["name"], parent, n["color_hex_triplet"], n["acronym"])
        for c in n["children"]:
            walk(c, n["id"])

    walk(onto["msg"][0], "")
    lines = ["id,name,parent_id,acronym,color"] + [f"{i},\"{nm}\",{p},{a},#{c}" for i, (nm, p, c, a) in colours.items()]
    amap = atlas_map()
    rgb = np.zeros(amap.shape + (3,), np.uint8)
    for rid in np.unique(amap)[1:]:
        c = int(colours[int(rid)][2], 16)
        rgb[amap == rid] = [c >> 16, (c >> 8) & 255, c & 255]
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "atlas.png")
    regions = LabelRegions(tmp_path / "atlas.png", parse_names_table("\n".join(lines).encode()))
    xs, ys = random_cells(1000, 300, 400, seed=2)
    by_colour = count_regions(regions, xs, ys, slide_hw=(300, 400))
    tifffile.imwrite(tmp_path / "ids.tif", amap)
    by_id = count_regions(LabelRegions(tmp_path / "ids.tif", parse_names_table(json.dumps(onto).encode())), xs, ys,
                          slide_hw=(300, 400))
    assert [(r.region.id, r.cells, r.cells_own, r.area_px) for r in by_colour.rows] == \
           [(r.region.id, r.cells, r.cells_own, r.area_px) for r in by_id.rows]
    assert by_colour.cells_outside == by_id.cells_outside


# ---------------------------------------------------------------------- hand-drawn polygons
CORTEX = [(20, 20), (380, 30), (370, 150), (30, 140)]
M1 = [(40, 40), (200, 45), (190, 130), (50, 120)]            # inside CORTEX
S1 = [(180, 50), (350, 45), (340, 135), (185, 125)]          # inside CORTEX, overlaps M1
HIPPO = [(60, 170), (300, 165), (320, 280), (70, 290)]
CA1 = [(80, 180), (200, 190), (150, 260)]                    # inside HIPPO


def cortex_features() -> dict:
    def f(ring, name=None, cls=None, kind="annotation"):
        props = {"objectType": kind}
        if name:
            props["name"] = name
        if cls:
            props["classification"] = {"name": cls, "color": [1, 2, 3]}
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "properties": props}

    return {"type": "FeatureCollection", "features": [
        f(M1, name="M1"), f(CORTEX, cls="Cortex"), f(S1, name="S1"), f(HIPPO, name="Hippocampus"), f(CA1, cls="CA1"),
        f([(1, 1), (5, 1), (5, 5)], name="a cell", kind="detection")]}


def expected_polygon_counts(xs, ys, rings: dict[str, list]) -> dict[str, int]:
    return {name: sum(inside_polygon(x + 0.5, y + 0.5, ring) or on_border(x + 0.5, y + 0.5, ring)
                      for x, y in zip(xs, ys, strict=True)) for name, ring in rings.items()}


def test_geojson_regions_against_ray_casting(tmp_path):
    pr = parse_polygon_regions(json.dumps(cortex_features()).encode())
    assert pr.hierarchy == "containment"
    parents = {r.name: pr.by_id[r.parent_id].name if r.parent_id else "" for r in pr.regions}
    assert parents == {"M1": "Cortex", "Cortex": "", "S1": "Cortex", "Hippocampus": "", "CA1": "Hippocampus"}
    xs, ys = random_cells(4000, 300, 400, seed=3)
    counts = count_regions(pr, xs, ys, slide_hw=(300, 400), pixel_size_um=2.0)
    table = read_table(write_regions_csv(tmp_path / "r.csv", counts))
    rings = {"Cortex": CORTEX, "M1": M1, "S1": S1, "Hippocampus": HIPPO, "CA1": CA1}
    expected = expected_polygon_counts(xs, ys, rings)
    assert {n: int(table[n]["cells"]) for n in rings} == expected
    for n, ring in rings.items():
        assert float(table[n]["area_px"]) == pytest.approx(shoelace(ring), abs=0.1)
        assert float(table[n]["area_mm2"]) == pytest.approx(shoelace(ring) * 4 / 1e6, rel=1e-4)
    # overlapping siblings: a cell in M1 and S1 counts in both, in the cortex once, and as its own in
    # the smaller of the two only
    both = sum(inside_polygon(x + .5, y + .5, M1) and inside_polygon(x + .5, y + .5, S1) for x, y in zip(xs, ys, strict=True))
    assert both > 0
    assert int(table["M1"]["cells"]) + int(table["S1"]["cells"]) - both <= int(table["Cortex"]["cells"])
    own = {n: int(table[n]["cells_own"]) for n in rings}
    smaller, larger = ("M1", "S1") if shoelace(M1) < shoelace(S1) else ("S1", "M1")
    assert own[smaller] == expected[smaller]
    assert own[larger] == expected[larger] - both
    assert sum(own.values()) + int(table["outside all regions"]["cells"]) == len(xs)
    assert table["M1"]["density_per_mm2"] != ""


def test_geojson_hierarchy_from_atlas_ids(tmp_path):
    """Atlas regions imported into QuPath carry ID / Parent ID measurements: those win over geometry."""
    def f(ring, name, rid, pid):
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "properties": {"objectType": "annotation", "name": name,
                               "measurements": {"ID": rid, "Parent ID": pid}}}

    # the child is drawn partly outside its parent: with ids it is still the parent's child, and the
    # parent's count is the union of both
    fc = [f(CORTEX, "Isocortex", 315, 8), f([(300, 100), (398, 100), (398, 200), (300, 200)], "MO", 500, 315)]
    pr = parse_polygon_regions(json.dumps(fc).encode())
    assert pr.hierarchy == "ids" and pr.by_id[500].parent_id == 315 and pr.by_id[315].parent_id == 0
    xs, ys = random_cells(3000, 300, 400, seed=4)
    counts = {r.region.name: r for r in count_regions(pr, xs, ys, slide_hw=(300, 400)).rows}
    mo = [(300, 100), (398, 100), (398, 200), (300, 200)]
    union = sum(inside_polygon(x + .5, y + .5, CORTEX) or inside_polygon(x + .5, y + .5, mo) for x, y in zip(xs, ys, strict=True))
    assert counts["Isocortex"].cells == union
    assert counts["MO"].cells == expected_polygon_counts(xs, ys, {"MO": mo})["MO"]


def roi_zip(path: Path, rois: list[tuple[str, list[tuple[float, float]] | tuple[int, int, int, int]]]) -> Path:
    for name, shape in rois:
        if isinstance(shape, tuple):
            x, y, w, h = shape
            roi = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=x, top=y, right=x + w, bottom=y + h, name=name)
        else:
            roi = roifile.ImagejRoi.frompoints(np.asarray(shape, np.float32), name=name)
            roi.roitype = roifile.ROI_TYPE.POLYGON
        roi.tofile(path, mode="a")
    return path


def test_roi_zip_regions_by_names_and_by_containment(tmp_path):
    cells = [("cell-000001", (1, 1, 3, 3)), ("cell-000002", (50, 50, 4, 4))]
    named = roi_zip(tmp_path / "named.zip", [*cells, ("region:HPF/CA1", CA1), ("region:HPF/DG", (220, 200, 80, 60)),
                                             ("region:CTX", CORTEX), ("region:CTX/M1", M1)])
    pr = parse_polygon_regions(named.read_bytes())
    assert pr.hierarchy == "names"
    assert [(r.name, pr.by_id[r.parent_id].name if r.parent_id else "") for r in pr.regions] == [
        ("HPF", ""), ("CA1", "HPF"), ("DG", "HPF"), ("CTX", ""), ("M1", "CTX")]
    xs, ys = random_cells(3000, 300, 400, seed=5)
    counts = {r.region.name: r for r in count_regions(pr, xs, ys, slide_hw=(300, 400)).rows}
    dg = [(220, 200), (300, 200), (300, 260), (220, 260)]
    exp = expected_polygon_counts(xs, ys, {"CA1": CA1, "DG": dg, "CTX": CORTEX, "M1": M1})
    assert {n: counts[n].cells for n in exp} == exp
    # HPF has no ROI of its own: it is the union of CA1 and DG (disjoint here)
    assert counts["HPF"].cells == exp["CA1"] + exp["DG"] and counts["HPF"].cells_own == 0
    assert counts["HPF"].area_px == pytest.approx(shoelace(CA1) + 80 * 60, abs=0.1)

    plain = roi_zip(tmp_path / "plain.zip", [("Hippocampus", HIPPO), ("CA1", CA1), ("rect", (10, 10, 380, 280))])
    pr2 = parse_polygon_regions(plain.read_bytes())
    assert pr2.hierarchy == "containment"
    assert {r.name: pr2.by_id[r.parent_id].name if r.parent_id else "" for r in pr2.regions} == {
        "Hippocampus": "rect", "CA1": "Hippocampus", "rect": ""}
    c2 = {r.region.name: r for r in count_regions(pr2, xs, ys, slide_hw=(300, 400)).rows}
    assert c2["rect"].cells == expected_polygon_counts(xs, ys, {"r": [(10, 10), (390, 10), (390, 290), (10, 290)]})["r"]
    assert c2["rect"].area_px == 380 * 280


# ---------------------------------------------------------------------- validation in the library
@pytest.mark.parametrize("data,needle", [
    (b'{"type": "FeatureCollection", "features": [', "not valid JSON"),
    (b'{"type": "FeatureCollection", "features": []}', "no polygon annotations"),
    (b"PK\x03\x04broken", "not a readable zip"),
    (b"", "empty"),
])
def test_bad_region_files_are_explained(data, needle):
    with pytest.raises(InvalidInput, match=needle):
        parse_polygon_regions(data)


def test_names_table_problems_are_explained(tmp_path):
    with pytest.raises(InvalidInput, match="header line with at least the columns 'id' and 'name'"):
        parse_names_table(b"1,CA1\n2,DG\n")
    with pytest.raises(InvalidInput, match="parent region"):
        parse_names_table(b"id,name,parent_id\n1,CA1,5\n")
    with pytest.raises(InvalidInput, match="loop"):
        parse_names_table(b"id,name,parent_id\n1,A,2\n2,B,1\n")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_names_table(b'{"msg": [')
    amap = atlas_map()
    tifffile.imwrite(tmp_path / "a.tif", amap)
    regions = LabelRegions(tmp_path / "a.tif", parse_names_table(b"id,name\n315,Isocortex\n500,MO\n"))
    with pytest.raises(InvalidInput, match=r"does not list: 382, 453, 726, 484682470"):
        count_regions(regions, np.array([1.0]), np.array([1.0]), slide_hw=(300, 400))
    full = LabelRegions(tmp_path / "a.tif", parse_names_table(json.dumps(allen_ontology()).encode()))
    with pytest.raises(InvalidInput, match="not scaled copies"):
        count_regions(full, np.array([1.0]), np.array([1.0]), slide_hw=(300, 500))
    full.scale = 3
    with pytest.raises(InvalidInput, match="Check the scale"):
        count_regions(full, np.array([1.0]), np.array([1.0]), slide_hw=(300, 400))


# ---------------------------------------------------------------------- over a real server
def _code(exc_info) -> grpc.StatusCode:
    return exc_info.value.code


def _centroids(counts_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(counts_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] != "total"]
    return np.array([float(r["centroid_x"]) for r in rows]), np.array([float(r["centroid_y"]) for r in rows])


# One server, model and prediction for this module's server tests (they only read the predicted job):
# these override conftest's per-test fixtures of the same names.
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_test_server(tmp_path_factory.mktemp("regions_server"))
    try:
        yield running
    finally:
        running.stop(grace=0.5)


@pytest.fixture(scope="module")
def client(server):
    from fosgate_client.client import FosgateClient

    with FosgateClient(f"127.0.0.1:{server.port}", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def untrained_model(server):
    return register_untrained_model(server)


@pytest.fixture(scope="module")
def predicted(server, client, untrained_model, tmp_path_factory):
    """A 240x320 px slide predicted with GeoJSON regions in the same request; (job, output folder)."""
    from test_end_to_end import discs

    tmp_path = tmp_path_factory.mktemp("regions_predicted")

    img, _ = discs((240, 320), 40, seed=7)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    (tmp_path / "regions.geojson").write_text(json.dumps(cortex_features()))
    slide = client.upload_slide(tmp_path / "cells.tif")
    regions = client.region_map(tmp_path / "regions.geojson", pixel_size_um=0.5)
    job = client.wait(client.predict(slide.slide_id, untrained_model, min_size=1, regions=regions).job_id,
                      timeout=300)
    out = tmp_path / "out"
    client.download_outputs(job, out)
    return job, out


def test_predict_with_regions_writes_the_regions_table(predicted):
    job, out = predicted
    assert (out / "cells.regions.csv").exists()
    xs, ys = _centroids(out / "cells.counts.csv")
    assert len(xs) > 0
    table = read_table(out / "cells.regions.csv")
    rings = {"Cortex": CORTEX, "M1": M1, "S1": S1, "Hippocampus": HIPPO, "CA1": CA1}
    assert {n: int(table[n]["cells"]) for n in rings} == expected_polygon_counts(xs, ys, rings)
    assert float(table["CA1"]["area_mm2"]) == pytest.approx(shoelace(CA1) * 0.25 / 1e6, rel=1e-4)
    inside = sum(int(table[n]["cells_own"]) for n in rings)
    assert inside == int(job.metrics["cells_in_regions"])
    assert inside + int(table["outside all regions"]["cells"]) == len(xs) == int(job.metrics["count"])


def test_count_regions_rpc_with_an_atlas_label_map(client, predicted, tmp_path):
    job, out = predicted
    amap = atlas_map(h=60, w=80)  # the 240x320 slide downsampled 4x
    tifffile.imwrite(tmp_path / "atlas.tif", amap, compression="zlib")
    (tmp_path / "ontology.json").write_text(json.dumps(allen_ontology()))
    rm = client.region_map(tmp_path / "atlas.tif", tmp_path / "ontology.json", pixel_size_um=1.0)
    cj = client.wait(client.count_regions(job.job_id, rm).job_id, timeout=120)
    assert cj.kind == "count_regions" and cj.result_id == job.job_id
    files = client.download_outputs(cj, tmp_path / "counted")
    assert [f.name for f in files] == ["cells.regions.csv"]
    table = read_table(files[0])
    xs, ys = _centroids(out / "cells.counts.csv")
    full = np.kron(amap, np.ones((4, 4), np.uint32))
    cell_label = full[np.floor(ys + 0.5).astype(int), np.floor(xs + 0.5).astype(int)]
    for rid, ids in descendants(allen_ontology()["msg"][0]).items():
        row = next((r for r in table.values() if r["region_id"] == str(rid)), None)
        if row is None:
            assert not np.isin(full, list(ids)).any()
            continue
        assert int(row["cells"]) == int(np.isin(cell_label, list(ids)).sum())
        assert float(row["area_mm2"]) == pytest.approx(np.isin(full, list(ids)).sum() / 1e6, rel=1e-5)


def test_region_input_errors_are_invalid_argument_with_a_sentence(server, client, untrained_model, predicted,
                                                                  tmp_path):
    from fosgate.v1 import fosgate_pb2 as pb
    from fosgate_client.client import FosgateClientError

    job, _ = predicted
    staged = set((server.app.store.root / "regions").glob("*.tif"))
    bad = pb.RegionMap(geojson=b'{"type": "FeatureCollection", "features": [')
    with pytest.raises(FosgateClientError, match="not valid JSON") as e:
        client.count_regions(job.job_id, bad)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    slide_id = json.loads(job.params)["slide_id"]
    with pytest.raises(FosgateClientError, match="not valid JSON") as e:
        client.predict(slide_id, untrained_model, regions=bad)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    amap = atlas_map(h=60, w=80)
    tifffile.imwrite(tmp_path / "atlas.tif", amap)
    missing = pb.RegionMap(label_image=(tmp_path / "atlas.tif").read_bytes(), names=b"id,name\n315,Isocortex\n")
    with pytest.raises(FosgateClientError, match="names table does not list: 382, 453") as e:
        client.count_regions(job.job_id, missing)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    tifffile.imwrite(tmp_path / "wrong.tif", np.ones((50, 80), np.uint16) * 315)
    wrong = pb.RegionMap(label_image=(tmp_path / "wrong.tif").read_bytes(), names=b"id,name\n315,Isocortex\n")
    with pytest.raises(FosgateClientError, match="not scaled copies") as e:
        client.count_regions(job.job_id, wrong)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(FosgateClientError, match="needs its names table") as e:
        client.count_regions(job.job_id, pb.RegionMap(label_image=(tmp_path / "atlas.tif").read_bytes()))
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(FosgateClientError) as e:
        client.count_regions("jb_nope", pb.RegionMap(geojson=json.dumps(cortex_features()).encode()))
    assert _code(e) == grpc.StatusCode.NOT_FOUND
    # nothing was staged for the refused label images
    assert set((server.app.store.root / "regions").glob("*.tif")) == staged


def test_cli_count_regions_with_an_roi_set(server, predicted, tmp_path):
    job, out = predicted
    rois = roi_zip(tmp_path / "RoiSet.zip", [("cell-000001", (1, 1, 3, 3)), ("region:left", (0, 0, 160, 240)),
                                             ("region:right", (160, 0, 160, 240))])
    fosgate = str(Path(sys.executable).with_name("fosgate"))
    proc = subprocess.run([fosgate, "count-regions", "--server", f"127.0.0.1:{server.port}", "--job", job.job_id,
                           "--regions", str(rois), "--out", str(tmp_path / "cli"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    table = read_table(Path(reply["regions_csv"]))
    xs, ys = _centroids(out / "cells.counts.csv")
    # a centroid on the shared border (x + 0.5 == 160) is in both regions, and its own region is the first
    left, right = int(((xs + 0.5) <= 160).sum()), int(((xs + 0.5) >= 160).sum())
    assert int(table["left"]["cells"]) == left and int(table["right"]["cells"]) == right
    assert int(table["left"]["cells_own"]) == left and int(table["right"]["cells_own"]) == len(xs) - left
    assert reply["cells_in_regions"] == len(xs) and reply["regions"] == 2
    assert "INFO" not in proc.stderr


def test_deeply_nested_regions_geojson_is_invalid_input_not_a_recursion_error():
    from fosgate.core.regions import polygon_regions_from_geojson

    with pytest.raises(InvalidInput, match="nested too deeply"):
        polygon_regions_from_geojson(b"[" * 200_000)
