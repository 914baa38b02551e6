"""Cells per brain region: region maps, the cell -> region assignment, roll-up and ``<stem>.regions.csv``.

A region map comes in one of three forms:

- a **label image** (an atlas annotation exported by ABBA, a QuickNII / VisuAlign map, ...): each pixel
  holds a region id (any integer type, or whole-numbered floats), or an RGB colour looked up in the names
  table's colours; 0 (or black) is "outside any region". It may be the slide's size or a downsampled copy:
  ``scale`` is slide pixels per map pixel (0: inferred from the two sizes, which must agree in both
  directions to within one map pixel). It comes with a **names table**: a CSV ``id,name[,parent_id]
  [,acronym][,color]`` or an Allen-style ontology JSON (nested ``children`` with ``id``, ``name``,
  ``acronym``, ``parent_structure_id``, ``color_hex_triplet``; the Allen API's ``{"msg": [...]}`` too);
- **QuPath GeoJSON** annotations (a FeatureCollection, a list of features or one feature; detections are
  skipped). Names come from ``properties.name``, else ``properties.classification.name``. Hierarchy from
  region ids and parent ids when every region carries them (``properties`` or ``properties.measurements``
  keys ``ID`` / ``id`` and ``Parent ID`` / ``parent_id`` / ``parentId``, as atlas regions imported into
  QuPath carry them), else from geometric containment;
- an **ImageJ ROI set** (.zip or one .roi). Names are the ROI names; when some names start with
  ``region`` (the Fiji macros' ``region:CA1`` convention) only those ROIs are regions and the prefix is
  dropped, so a set that also holds cells works. Hierarchy from ``parent/child`` names when any name has
  a ``/`` (``HPF/CA1`` is CA1 inside HPF; a parent without its own ROI is the union of its children),
  else from geometric containment.

Invariants
- Coordinates are slide pixels with pixel edges on integers (ImageJ's and QuPath's convention): the cell
  whose centroid is pixel (row ``cy``, column ``cx``; the mean of its pixel indices, as in the counts CSV)
  is the point (``cx + 0.5``, ``cy + 0.5``); in a label map scaled by ``s`` it reads map pixel
  (``floor((cy + 0.5) / s)``, ``floor((cx + 0.5) / s)``).
- A cell belongs to the region of its centroid: ``cells_own`` counts each cell once, in the deepest region
  containing it (among overlapping regions of equal depth: the smaller one, then the first in the file).
  A polygon's border belongs to it, so a centroid exactly on the border two regions share is in both
  (like an overlap) and is never lost between them.
- Roll-up: ``cells`` and ``area_px`` of a region cover the region and all its descendants. For label maps
  that is the sum over the subtree; for polygons it is the union of the region's and its descendants'
  polygons, so a cell or area in the overlap of two sibling polygons counts in full in each sibling and
  once in their parent (siblings' counts can then add up to more than the parent's).
- Containment hierarchy: a polygon's parent is the smallest other polygon that holds at least 99 % of its
  area (hand-drawn outlines may stray a little); equal polygons nest in file order.
- Memory: polygons are never rasterised (point-in-polygon with a shapely STRtree, cells in chunks); a
  label image is read in row bands at its own resolution (TIFF lazily through zarr), so memory grows with
  the map's width and the number of cells, not with the slide.
- Bad input raises ``InvalidInput`` with a sentence that says what to fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fosgate.errors import InvalidInput, invalid_input_on_error

MAX_REGIONS = 100_000
CONTAINED = 0.99  # share of a polygon's area that must lie in another for it to count as inside
POINT_CHUNK = 200_000
BAND_PIXELS = 1 << 24
REGION_COLUMNS = ["region_id", "name", "acronym", "parent_id", "depth", "cells", "cells_own", "area_px",
                  "area_mm2", "density_per_mm2"]

Progress = Callable[[float, str], None]


@dataclass
class Region:
    """One named region; ``parent_id`` 0 means a top-level region."""

    id: int
    name: str
    parent_id: int = 0
    acronym: str = ""
    color: int | None = None  # 0xRRGGBB, for RGB label maps


@dataclass
class RegionCount:
    region: Region
    depth: int
    cells: int
    cells_own: int
    area_px: float


@dataclass
class RegionCounts:
    rows: list[RegionCount]
    cells_total: int
    cells_outside: int
    pixel_size_um: float = 0.0

    @property
    def cells_in_regions(self) -> int:
        return self.cells_total - self.cells_outside


# ---------------------------------------------------------------------- hierarchy helpers
def _check_tree(regions: list[Region], what: str) -> dict[int, Region]:
    """Regions by id; refuses duplicate ids, unknown parents and cycles."""
    if len(regions) > MAX_REGIONS:
        raise InvalidInput(f"The {what} lists {len(regions)} regions; at most {MAX_REGIONS} are supported.")
    by_id: dict[int, Region] = {}
    for r in regions:
        if r.id in by_id:
            raise InvalidInput(f"Region id {r.id} appears twice in the {what} ('{by_id[r.id].name}' and "
                               f"'{r.name}'); every region needs its own id.")
        by_id[r.id] = r
    unknown = sorted({r.parent_id for r in regions if r.parent_id and r.parent_id not in by_id})
    if unknown:
        raise InvalidInput(f"The {what} names parent region(s) {_ids(unknown)} that it does not list; add them "
                           "or leave the parent empty for top-level regions.")
    for r in regions:
        seen, p = {r.id}, r.parent_id
        while p:
            if p in seen:
                raise InvalidInput(f"The {what} has a loop in its hierarchy at region {r.id} ('{r.name}'): a region "
                                   "cannot be its own ancestor.")
            seen.add(p)
            p = by_id[p].parent_id
    return by_id


def _ids(ids: Iterable[int], limit: int = 10) -> str:
    ids = list(ids)
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _depths(by_id: dict[int, Region]) -> dict[int, int]:
    depth: dict[int, int] = {}

    def d(i: int) -> int:
        if i not in depth:
            chain, p = [], i
            while p and p not in depth:
                chain.append(p)
                p = by_id[p].parent_id
            base = depth.get(p, -1) if p else -1
            for k in reversed(chain):
                base += 1
                depth[k] = base
        return depth[i]

    for i in by_id:
        d(i)
    return depth


def _tree_order(regions: list[Region], keep: set[int]) -> list[Region]:
    """``regions`` restricted to ``keep`` (closed under parents), parents before children, siblings in input order."""
    children: dict[int, list[Region]] = {}
    for r in regions:
        if r.id in keep:
            children.setdefault(r.parent_id if r.parent_id in keep else 0, []).append(r)
    out: list[Region] = []
    stack = list(reversed(children.get(0, [])))
    while stack:
        r = stack.pop()
        out.append(r)
        stack.extend(reversed(children.get(r.id, [])))
    return out


# ---------------------------------------------------------------------- names tables
def parse_names_table(data: bytes) -> list[Region]:
    """Regions from a names table: CSV (``id,name[,parent_id][,acronym][,color]``, header required) or an
    Allen-style ontology JSON. Checks ids, parents and loops."""
    text = _text(data, "names table")
    stripped = text.lstrip()
    regions = _allen_json(stripped) if stripped.startswith(("{", "[")) else _names_csv(text)
    if not regions:
        raise InvalidInput("The names table lists no regions.")
    _check_tree(regions, "names table")
    return regions


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise InvalidInput(f"The {what} is not a text file.") from None


def _int(value, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} '{str(value)[:40]}' is not a whole number.") from None
    if not math.isfinite(f) or f != int(f) or f < 0:
        raise InvalidInput(f"{what} '{str(value)[:40]}' is not a whole number of zero or more.")
    return int(f)


def _color(value) -> int | None:
    if value is None or value == "":
        return None
    s = str(value).strip().lstrip("#")
    if re.fullmatch(r"[0-9A-Fa-f]{6}", s):
        return int(s, 16)
    parts = re.split(r"[\s;:/|-]+", s)
    if len(parts) == 3 and all(p.isdigit() and int(p) < 256 for p in parts):
        r, g, b = (int(p) for p in parts)
        return r << 16 | g << 8 | b
    raise InvalidInput(f"The colour '{str(value)[:20]}' in the names table is neither RRGGBB hex nor 'R G B'.")


def _names_csv(text: str) -> list[Region]:
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().lower().replace(" ", "_") for c in rows[0]]
    aliases = {"id": ("id", "region_id", "label", "structure_id", "index"), "name": ("name", "region", "region_name",
               "structure"), "parent_id": ("parent_id", "parent", "parent_structure_id", "parentid"),
               "acronym": ("acronym", "abbreviation", "short_name"), "color": ("color", "colour", "color_hex_triplet",
                                                                              "rgb")}
    col = {k: next((header.index(a) for a in names if a in header), None) for k, names in aliases.items()}
    if col["id"] is None or col["name"] is None:
        raise InvalidInput("The names table needs a header line with at least the columns 'id' and 'name' "
                           "(optionally 'parent_id', 'acronym', 'color'), e.g. 'id,name,parent_id'.")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        def get(k, row=row):
            i = col[k]
            return row[i].strip() if i is not None and i < len(row) else ""

        rid = _int(get("id"), f"Line {n} of the names table: the id")
        if rid == 0:
            raise InvalidInput(f"Line {n} of the names table uses id 0, which means 'outside any region'; "
                               "give regions ids from 1.")
        out.append(Region(rid, get("name") or f"region {rid}", _int(get("parent_id"), f"Line {n}: the parent id"),
                          get("acronym"), _color(get("color"))))
    return out


def _allen_json(text: str) -> list[Region]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"The names table looks like JSON but is not valid JSON ({str(exc)[:120]}).") from None
    if isinstance(doc, dict) and isinstance(doc.get("msg"), list):
        doc = doc["msg"]  # the Allen API's answer
    roots = doc if isinstance(doc, list) else [doc]
    out: list[Region] = []
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        node, parent = stack.pop()
        if not isinstance(node, dict) or "id" not in node:
            raise InvalidInput("The ontology JSON must hold structures with an 'id' (and 'name', 'children', ...), "
                               "like the Allen Brain Atlas structure graph.")
        rid = _int(node["id"], "A structure id in the ontology JSON")
        if rid == 0:
            raise InvalidInput("The ontology JSON uses id 0, which means 'outside any region'.")
        explicit = node.get("parent_structure_id", node.get("parent_id"))
        pid = _int(explicit, "A parent_structure_id in the ontology JSON") if explicit not in (None, "") else parent
        out.append(Region(rid, str(node.get("name") or node.get("acronym") or f"region {rid}"), pid,
                          str(node.get("acronym") or ""), _color(node.get("color_hex_triplet") or node.get("color"))))
        children = node.get("children") or []
        if not isinstance(children, list):
            raise InvalidInput(f"Structure {rid} in the ontology JSON has 'children' that is not a list.")
        stack.extend((c, rid) for c in reversed(children))
    return out


# ---------------------------------------------------------------------- polygon maps
@dataclass
class PolygonRegions:
    """Regions with polygons (slide pixel coordinates, pixel edges on integers); a region without its own
    polygon (``None``) is the union of its descendants'."""

    regions: list[Region]
    geoms: list  # shapely geometry or None, aligned with ``regions``
    hierarchy: str = "containment"  # or "ids", "names"

    def __post_init__(self) -> None:
        self.by_id = _check_tree(self.regions, "region set")


def _clean(geom):
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = geom.buffer(0)
    if geom.geom_type == "GeometryCollection":
        from shapely.geometry import MultiPolygon

        polys = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = MultiPolygon([p for g in polys for p in (g.geoms if g.geom_type == "MultiPolygon" else [g])])
    return None if geom.is_empty or geom.area <= 0 else geom


def _containment_parents(geoms: list) -> list[int]:
    """For each polygon, the index + 1 of the smallest polygon that holds it (0: none)."""
    from shapely import STRtree

    idx = [i for i, g in enumerate(geoms) if g is not None]
    tree = STRtree([geoms[i] for i in idx])
    areas = [g.area if g is not None else 0.0 for g in geoms]
    parents = [0] * len(geoms)
    for i in idx:
        g = geoms[i]
        best = None
        for k in tree.query(g):
            j = idx[int(k)]
            if j == i or areas[j] < areas[i] or (areas[j] == areas[i] and j > i):
                continue
            if g.intersection(geoms[j]).area >= CONTAINED * areas[i] and (best is None or areas[j] < areas[best]):
                best = j
        parents[i] = best + 1 if best is not None else 0
    # equal polygons could point at each other through float noise: break any loop at its first member
    for i in range(len(geoms)):
        seen, p = {i}, parents[i]
        while p:
            if p - 1 in seen:
                parents[i] = 0
                break
            seen.add(p - 1)
            p = parents[p - 1]
    return parents


def polygon_regions_from_geojson(data: bytes) -> PolygonRegions:
    """Regions from QuPath GeoJSON annotations (see the module docstring for names and hierarchy)."""
    from shapely.geometry import shape

    from fosgate.core.edits import geojson_features

    features = geojson_features(data, "The regions GeoJSON")
    names, geoms, ids, pids = [], [], [], []
    for n, f in enumerate(features, start=1):
        if not isinstance(f, dict):
            raise InvalidInput(f"GeoJSON feature {n} is not an object.")
        props = f.get("properties") or {}
        if not isinstance(props, dict):
            props = {}
        if str(props.get("objectType", "annotation")).lower() in ("detection", "cell", "tile"):
            continue  # cells and tiles are not regions
        gj = f.get("geometry")
        if not isinstance(gj, dict):
            raise InvalidInput(f"GeoJSON feature {n} has no geometry.")
        if gj.get("type") not in ("Polygon", "MultiPolygon"):
            continue  # points and lines enclose no area
        with invalid_input_on_error(lambda why, n=n: f"GeoJSON feature {n} has a malformed geometry ({why})."):
            geom = _clean(shape(gj))
        if geom is None:
            continue
        cls = props.get("classification") if isinstance(props.get("classification"), dict) else {}
        name = str(props.get("name") or cls.get("name") or f"region {len(names) + 1}")
        meas = props.get("measurements") if isinstance(props.get("measurements"), dict) else {}
        ids.append(_first(props, meas, ("ID", "id", "Id", "region_id", "Atlas ID")))
        pids.append(_first(props, meas, ("Parent ID", "parent_id", "parentId", "Parent id", "parent")))
        names.append(name)
        geoms.append(geom)
    if not geoms:
        raise InvalidInput("The regions GeoJSON holds no polygon annotations; draw or import the regions in QuPath "
                           "as annotations and export them as GeoJSON.")
    if all(i is not None for i in ids) and len(set(ids)) == len(ids):
        try:
            rid = [_int(i, "A region ID") for i in ids]
            known = set(rid)
            pid = [_int(p, "A parent ID") if p is not None else 0 for p in pids]
            pid = [p if p in known else 0 for p in pid]  # parents outside the file (e.g. root): top level
            if 0 not in rid and any(pid):
                regions = [Region(i, nm, p) for i, nm, p in zip(rid, names, pid, strict=True)]
                return PolygonRegions(regions, geoms, "ids")
        except InvalidInput:
            pass  # ids that are not numbers: fall back to containment
    parents = _containment_parents(geoms)
    regions = [Region(i + 1, nm, p) for i, (nm, p) in enumerate(zip(names, parents, strict=True))]
    return PolygonRegions(regions, geoms, "containment")


def _first(props: dict, meas: dict, keys: tuple[str, ...]):
    for k in keys:
        for d in (props, meas):
            v = d.get(k)
            if v not in (None, ""):
                return v
    return None


def polygon_regions_from_roi_zip(data: bytes) -> PolygonRegions:
    """Regions from an ImageJ ROI set (see the module docstring for names and hierarchy)."""
    from roifile import ImagejRoi

    from fosgate.core.edits import _roi_geometry

    blobs: list[tuple[str, bytes]] = []
    try:
        if data[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                blobs = [(n, zf.read(n)) for n in zf.namelist() if n.lower().endswith(".roi")]
        elif data[:4] == b"Iout":
            blobs = [("region.roi", data)]
        else:
            raise InvalidInput("The regions file is neither GeoJSON nor an ImageJ ROI set (.zip of .roi files).")
    except zipfile.BadZipFile:
        raise InvalidInput("The regions ROI set is not a readable zip file (it may be truncated).") from None
    if len(blobs) > MAX_REGIONS:
        raise InvalidInput(f"The ROI set has {len(blobs)} ROIs; at most {MAX_REGIONS} regions are supported.")
    items = []
    for i, (fname, blob) in enumerate(blobs, start=1):
        with invalid_input_on_error(lambda why, i=i: f"ROI number {i} in the set cannot be read ({why})."):
            roi = ImagejRoi.frombytes(blob)
            geom = _clean(_roi_geometry(roi, 0.0, 0.0))
        name = (roi.name or Path(fname).stem).strip()
        items.append((name, geom))
    if any(n.lower().startswith("region") for n, _ in items):
        items = [(re.sub(r"^region[\s:_-]*", "", n, flags=re.I) or n, g) for n, g in items
                 if n.lower().startswith("region")]
    items = [(n, g) for n, g in items if g is not None]
    if not items:
        raise InvalidInput("The ROI set holds no area ROIs to use as regions (rectangles, polygons, ovals, ...).")
    if any("/" in n for n, _ in items):
        return _regions_by_path(items)
    geoms = [g for _, g in items]
    parents = _containment_parents(geoms)
    regions = [Region(i + 1, n, p) for i, ((n, _), p) in enumerate(zip(items, parents, strict=True))]
    return PolygonRegions(regions, geoms, "containment")


def _regions_by_path(items: list[tuple[str, object]]) -> PolygonRegions:
    """``a/b/c`` names: c inside b inside a; a path named twice is one region (the union of its ROIs)."""
    from shapely.ops import unary_union

    ids: dict[str, int] = {}
    regions: list[Region] = []
    parts_geoms: dict[int, list] = {}
    for name, geom in items:
        parts = [p.strip() for p in name.split("/") if p.strip()] or [name]
        parent = 0
        for depth in range(1, len(parts) + 1):
            key = "/".join(parts[:depth])
            if key not in ids:
                ids[key] = len(regions) + 1
                regions.append(Region(ids[key], parts[depth - 1], parent))
            parent = ids[key]
        parts_geoms.setdefault(parent, []).append(geom)
    geoms = [unary_union(parts_geoms[r.id]) if r.id in parts_geoms else None for r in regions]
    return PolygonRegions(regions, geoms, "names")


def parse_polygon_regions(data: bytes) -> PolygonRegions:
    """GeoJSON or an ImageJ ROI set, told apart by their first bytes."""
    if not data:
        raise InvalidInput("The regions file is empty.")
    if data[:2] == b"PK" or data[:4] == b"Iout":
        return polygon_regions_from_roi_zip(data)
    return polygon_regions_from_geojson(data)


def count_polygon_regions(regions: PolygonRegions, xs: np.ndarray, ys: np.ndarray) -> tuple[list[RegionCount], int]:
    """Counts for each region (all regions, in tree order) and the number of cells outside every polygon."""
    from shapely import STRtree, points
    from shapely.ops import unary_union

    rs, geoms = regions.regions, regions.geoms
    n_reg = len(rs)
    index_of = {r.id: i for i, r in enumerate(rs)}
    depth = _depths(regions.by_id)
    # ancestors (self included) as region indices, for the roll-up
    anc = []
    for r in rs:
        chain, p = [index_of[r.id]], r.parent_id
        while p:
            chain.append(index_of[p])
            p = regions.by_id[p].parent_id
        anc.append(np.array(chain, np.int64))
    with_geom = [i for i, g in enumerate(geoms) if g is not None]
    tree = STRtree([geoms[i] for i in with_geom])
    tree_to_region = np.array(with_geom, np.int64)
    areas = np.array([g.area if g is not None else 0.0 for g in geoms])
    # rank for "the deepest region holds the cell": deeper first, then smaller, then earlier in the file
    order = sorted(range(n_reg), key=lambda i: (-depth[rs[i].id], areas[i], i))
    rank = np.empty(n_reg, np.int64)
    rank[order] = np.arange(n_reg)
    cells = np.zeros(n_reg, np.int64)
    own = np.zeros(n_reg, np.int64)
    inside = 0
    n = len(xs)
    for s in range(0, n, POINT_CHUNK):
        pts = points(np.asarray(xs[s:s + POINT_CHUNK], np.float64) + 0.5,
                     np.asarray(ys[s:s + POINT_CHUNK], np.float64) + 0.5)
        hit_pt, hit_tree = tree.query(pts, predicate="intersects")  # borders included: no cell falls between
        if hit_pt.size == 0:
            continue
        hit_reg = tree_to_region[hit_tree]
        # own: one region per cell, the best-ranked one
        o = np.lexsort((rank[hit_reg], hit_pt))
        first = np.ones(o.size, bool)
        first[1:] = hit_pt[o][1:] != hit_pt[o][:-1]
        np.add.at(own, hit_reg[o][first], 1)
        inside += int(first.sum())
        # rolled up: each (cell, ancestor) pair once
        lens = np.array([anc[r].size for r in hit_reg])
        pair_cell = np.repeat(hit_pt, lens)
        pair_reg = np.concatenate([anc[r] for r in hit_reg])
        keys = np.unique(pair_cell.astype(np.int64) * n_reg + pair_reg)
        np.add.at(cells, keys % n_reg, 1)
    # area: union of the region's and its descendants' polygons
    members: dict[int, list] = {i: [] for i in range(n_reg)}
    for i in with_geom:
        for a in anc[i]:
            members[int(a)].append(geoms[i])
    area = [float(unary_union(members[i]).area) if len(members[i]) > 1 else (members[i][0].area if members[i] else 0.0)
            for i in range(n_reg)]
    rows = [RegionCount(r, depth[r.id], int(cells[index_of[r.id]]), int(own[index_of[r.id]]),
                        area[index_of[r.id]]) for r in _tree_order(rs, {r.id for r in rs})]
    return rows, n - inside


# ---------------------------------------------------------------------- label maps
class LabelImage:
    """A label image read lazily in row bands: TIFF (any integer type, whole-numbered floats; tiled or
    striped, through zarr) or PNG (8/16-bit grey, palette indices or RGB)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tf = None
        name = self.path.name
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise InvalidInput(f"The region map '{name}' is missing or empty.")
        head = self.path.read_bytes()[:8]
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            import tifffile
            import zarr

            with invalid_input_on_error(lambda why: f"The region map '{name}' is not a readable TIFF ({why}).",
                                        cleanup=self.close):
                self._tf = tifffile.TiffFile(self.path)
                series = self._tf.series[0]
                axes = series.axes.upper()
                self._array = zarr.open_array(series.aszarr(level=0), mode="r")
            shape = series.shape
        elif head[:8] == b"\x89PNG\r\n\x1a\n":
            from PIL import Image

            with (invalid_input_on_error(lambda why: f"The region map '{name}' is not a readable PNG ({why})."),
                  Image.open(self.path) as im):
                if im.size[0] * im.size[1] > 400_000_000:
                    raise InvalidInput(f"The PNG region map '{name}' is {im.size[0]}x{im.size[1]} px; save maps "
                                       "that large as a tiled TIFF.")
                if im.mode in ("RGB", "RGBA"):
                    arr = np.asarray(im.convert("RGB"))
                elif im.mode in ("LA", "PA"):
                    arr = np.asarray(im)[..., 0]
                else:
                    arr = np.asarray(im)  # L, P (palette index = label), I;16, I
            self._array = arr
            axes = "YXS" if arr.ndim == 3 else "YX"
            shape = arr.shape
        else:
            raise InvalidInput(f"The region map '{name}' must be a TIFF or PNG label image.")
        if "Y" not in axes or "X" not in axes:
            self.close()
            raise InvalidInput(f"The region map '{name}' has axes {axes}; it needs Y and X.")
        self._axes = axes
        self.height, self.width = int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        chan = "S" if "S" in axes else ("C" if "C" in axes else "")
        n_chan = shape[axes.index(chan)] if chan else 1
        if n_chan not in (1, 3, 4):
            self.close()
            raise InvalidInput(f"The region map '{name}' has {n_chan} channels; give one channel of region ids "
                               "or an RGB picture whose colours the names table lists.")
        self._chan = chan if n_chan > 1 else ""
        self.rgb = n_chan > 1
        self.dtype = np.dtype(self._array.dtype)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Region ids (int64; colours as 0xRRGGBB for RGB maps) of rows y0:y1, columns x0:x1."""
        index = []
        for ax in self._axes:
            if ax == "Y":
                index.append(slice(y0, y1))
            elif ax == "X":
                index.append(slice(x0, x1))
            elif ax == self._chan and self._chan:
                index.append(slice(0, 3))
            else:
                index.append(0)
        block = np.asarray(self._array[tuple(index)])
        kept = [a for a in self._axes if a in ("Y", "X") or (a == self._chan and self._chan)]
        if self.rgb:
            block = np.transpose(block, [kept.index("Y"), kept.index("X"), kept.index(self._chan)]).astype(np.int64)
            return block[..., 0] << 16 | block[..., 1] << 8 | block[..., 2]
        block = np.transpose(block, [kept.index("Y"), kept.index("X")])
        if block.dtype.kind == "f" and (not np.all(np.isfinite(block)) or np.any(block != np.round(block))):
            raise InvalidInput(f"The region map '{self.path.name}' holds fractional values; a label image must "
                               "hold whole-numbered region ids.")
        if block.size and block.min() < 0:
            raise InvalidInput(f"The region map '{self.path.name}' holds negative values; region ids are 0 or more.")
        return block.astype(np.int64)

    def bands(self) -> Iterable[tuple[int, int]]:
        rows = max(1, BAND_PIXELS // max(self.width, 1))
        for y0 in range(0, self.height, rows):
            yield y0, min(self.height, y0 + rows)

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()
            self._tf = None

    def __enter__(self) -> LabelImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class LabelRegions:
    """A label image plus its names table; ``scale`` 0 = inferred from the slide size at counting."""

    path: Path
    regions: list[Region]
    scale: float = 0.0
    by_id: dict[int, Region] = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.by_id = _check_tree(self.regions, "names table")


def map_scale(map_hw: tuple[int, int], slide_hw: tuple[int, int], scale: float = 0.0) -> tuple[float, float]:
    """Slide pixels per map pixel (y, x). With ``scale`` 0 the map must be the slide's size or a uniformly
    scaled copy of it (the two directions agree to within one map pixel); else ``InvalidInput``."""
    (mh, mw), (sh, sw) = map_hw, slide_hw
    if scale < 0 or not math.isfinite(scale):
        raise InvalidInput(f"The map scale must be a positive number of slide pixels per map pixel (got {scale}).")
    if scale:
        if abs(mh * scale - sh) > scale + 1 or abs(mw * scale - sw) > scale + 1:
            raise InvalidInput(
                f"The region map is {mw}x{mh} px; at {scale:g} slide pixels per map pixel it covers "
                f"{mw * scale:.0f}x{mh * scale:.0f} px, but the slide is {sw}x{sh} px. Check the scale, or that the "
                "map belongs to this slide.")
        return float(scale), float(scale)
    if (mh, mw) == (sh, sw):
        return 1.0, 1.0
    sy, sx = sh / mh, sw / mw
    if abs(sh / sx - mh) > 1 or abs(sw / sy - mw) > 1:
        raise InvalidInput(
            f"The region map is {mw}x{mh} px but the slide is {sw}x{sh} px, and the two are not scaled copies of each "
            "other (the width is scaled by {:.3g}, the height by {:.3g}). Export the map at the slide's size or a "
            "uniform downsampling of it, or give the scale.".format(sx, sy))
    return sy, sx


def scan_label_ids(path: Path, progress: Progress | None = None) -> tuple[dict[int, int], tuple[int, int]]:
    """Pixels per value of a label image (values as ``LabelImage.read`` returns them) and its (height, width)."""
    counts: dict[int, int] = {}
    with LabelImage(path) as img:
        for y0, y1 in img.bands():
            vals, n = np.unique(img.read(y0, y1, 0, img.width), return_counts=True)
            for v, c in zip(vals.tolist(), n.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + c
            if progress:
                progress(y1 / img.height, f"Read {y1}/{img.height} rows of the region map.")
        return counts, (img.height, img.width)


def check_label_ids(values: Iterable[int], regions: LabelRegions, rgb: bool) -> dict[int, int]:
    """Map from label-image values to region ids; ``InvalidInput`` naming the values the table lacks."""
    values = [v for v in values if v != 0]
    if rgb:
        by_color = {r.color: r.id for r in regions.regions if r.color is not None}
        missing = [v for v in values if v not in by_color]
        if missing:
            shown = ", ".join(f"#{v:06X}" for v in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InvalidInput(f"The region map is a colour picture, and {len(missing)} of its colours ({shown}) are "
                               "not in the names table; give a names table with a 'color' column (or an Allen "
                               "ontology JSON with color_hex_triplet) that lists every colour, or export the map "
                               "as region ids.")
        return {v: by_color[v] for v in values}
    missing = [v for v in values if v not in regions.by_id]
    if missing:
        raise InvalidInput(f"The region map uses {len(missing)} region id(s) that the names table does not list: "
                           f"{_ids(sorted(missing))}. Give the names table that belongs to this atlas.")
    return {v: v for v in values}


def count_label_regions(regions: LabelRegions, xs: np.ndarray, ys: np.ndarray, slide_hw: tuple[int, int],
                        progress: Progress | None = None) -> tuple[list[RegionCount], int]:
    """Counts per region from a label image (rows for regions present in the map and their ancestors)."""
    with LabelImage(regions.path) as img:
        sy, sx = map_scale((img.height, img.width), slide_hw, regions.scale)
        pix: dict[int, int] = {}
        own_by_value: dict[int, int] = {}
        n = len(xs)
        rows = np.floor((np.asarray(ys, np.float64) + 0.5) / sy).astype(np.int64)
        cols = np.floor((np.asarray(xs, np.float64) + 0.5) / sx).astype(np.int64)
        on_map = (rows >= 0) & (rows < img.height) & (cols >= 0) & (cols < img.width)
        order = np.argsort(np.where(on_map, rows, -1), kind="stable")
        srows = rows[order]
        bands = list(img.bands())
        for b, (y0, y1) in enumerate(bands):
            block = img.read(y0, y1, 0, img.width)
            vals, c = np.unique(block, return_counts=True)
            for v, k in zip(vals.tolist(), c.tolist(), strict=True):
                pix[v] = pix.get(v, 0) + k
            lo, hi = np.searchsorted(srows, [y0, y1])
            sel = order[lo:hi]
            sel = sel[on_map[sel]]
            if sel.size:
                hit = block[rows[sel] - y0, cols[sel]]
                hv, hc = np.unique(hit, return_counts=True)
                for v, k in zip(hv.tolist(), hc.tolist(), strict=True):
                    own_by_value[v] = own_by_value.get(v, 0) + k
            if progress:
                progress((b + 1) / len(bands), f"Counted cells in {y1}/{img.height} rows of the region map.")
        to_id = check_label_ids(pix.keys(), regions, img.rgb)
    by_id = regions.by_id
    own_px: dict[int, float] = {}
    own: dict[int, int] = {}
    for v, k in pix.items():
        if v:
            own_px[to_id[v]] = own_px.get(to_id[v], 0.0) + k * sx * sy
    for v, k in own_by_value.items():
        if v:
            own[to_id[v]] = own.get(to_id[v], 0) + k
    keep: set[int] = set()
    for rid in own_px:
        while rid and rid not in keep:
            keep.add(rid)
            rid = by_id[rid].parent_id
    ordered = _tree_order(regions.regions, keep)
    depth = _depths(by_id)
    cells = {r.id: own.get(r.id, 0) for r in ordered}
    area = {r.id: own_px.get(r.id, 0.0) for r in ordered}
    for r in reversed(ordered):  # children come after parents: add each subtree into its parent
        if r.parent_id in cells:
            cells[r.parent_id] += cells[r.id]
            area[r.parent_id] += area[r.id]
    out = [RegionCount(r, depth[r.id], cells[r.id], own.get(r.id, 0), area[r.id]) for r in ordered]
    inside = sum(own.values())
    return out, n - inside


# ---------------------------------------------------------------------- cells, counting, output
def read_centroids(counts_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cell centroids (x, y; slide pixels) from a ``<stem>.counts.csv`` (its ``total`` row is skipped)."""
    xs: list[float] = []
    ys: list[float] = []
    with open(counts_csv, newline="") as fh:
        rd = csv.DictReader(fh)
        if not rd.fieldnames or "centroid_x" not in rd.fieldnames or "centroid_y" not in rd.fieldnames:
            raise InvalidInput(f"'{Path(counts_csv).name}' is not a fosgate counts table (no centroid columns).")
        for row in rd:
            if row.get("label") == "total" or not row.get("centroid_x"):
                continue
            xs.append(float(row["centroid_x"]))
            ys.append(float(row["centroid_y"]))
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def count_regions(region_map: PolygonRegions | LabelRegions, xs: np.ndarray, ys: np.ndarray, *,
                  slide_hw: tuple[int, int], pixel_size_um: float = 0.0,
                  progress: Progress | None = None) -> RegionCounts:
    """Cells per region for centroids (``xs``, ``ys``; slide pixels, as in the counts CSV)."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if isinstance(region_map, LabelRegions):
        rows, outside = count_label_regions(region_map, xs, ys, slide_hw, progress)
    else:
        rows, outside = count_polygon_regions(region_map, xs, ys)
    return RegionCounts(rows, len(xs), outside, pixel_size_um)


def write_regions_csv(path: Path, counts: RegionCounts) -> Path:
    """``<stem>.regions.csv``: one row per region (parents before children) and a last row, region id 0,
    for the cells outside every region. Areas in mm² and densities are empty when the pixel size is unknown."""
    px = counts.pixel_size_um
    tmp = Path(path).with_name(Path(path).name + ".part")
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(REGION_COLUMNS)
        for c in counts.rows:
            mm2 = c.area_px * px * px / 1e6 if px else 0.0
            wr.writerow([c.region.id, c.region.name, c.region.acronym, c.region.parent_id or "", c.depth, c.cells,
                         c.cells_own, f"{c.area_px:.1f}", f"{mm2:.7g}" if px else "",
                         f"{c.cells / mm2:.3f}" if px and mm2 > 0 else ""])
        wr.writerow([0, "outside all regions", "", "", "", counts.cells_outside, counts.cells_outside, "", "", ""])
    tmp.replace(path)
    return Path(path)


def write_region_counts(counts_csv: Path, region_map: PolygonRegions | LabelRegions, out_path: Path, *,
                        slide_hw: tuple[int, int], pixel_size_um: float = 0.0,
                        progress: Progress | None = None) -> RegionCounts:
    """Read a prediction's counts CSV, count its cells per region and write ``out_path`` (regions.csv)."""
    xs, ys = read_centroids(counts_csv)
    counts = count_regions(region_map, xs, ys, slide_hw=slide_hw, pixel_size_um=pixel_size_um, progress=progress)
    write_regions_csv(out_path, counts)
    return counts


__all__ = [
    "LabelImage", "LabelRegions", "PolygonRegions", "Region", "RegionCount", "RegionCounts", "REGION_COLUMNS",
    "check_label_ids", "count_regions", "map_scale", "parse_names_table", "parse_polygon_regions", "read_centroids",
    "scan_label_ids", "write_region_counts", "write_regions_csv",
]
