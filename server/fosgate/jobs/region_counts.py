"""Cells per brain region on the server: staging a client's region map, and the job bodies.

``stage_regions`` runs in the request (before any job starts), so a bad map or names table is refused
with INVALID_ARGUMENT and a sentence, not a failed job: it parses GeoJSON / ROI sets and names tables,
checks the label map's size against the slide and, for maps up to ``SCAN_PIXELS``, that the names table
lists every id in the map (bigger maps are checked in the job, with the same sentence). The region
bytes are written under ``<data>/regions/`` with server-made names (``rg_<hex>``), never a client's,
and the job parameters keep only those paths (job parameters are JSON in SQLite).

``CountRegions`` is a job, not a direct reply, because its work grows with the slide and the map
(reading a full-resolution label map, uniting thousands of atlas polygons) and must not be bound by a
unary call's deadline; as a job it gets progress, cancellation, a checksummed artifact and a row that
outlives the call, exactly as the prediction's own outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fosgate.core.regions import (
    LabelImage,
    LabelRegions,
    PolygonRegions,
    check_label_ids,
    map_scale,
    parse_names_table,
    parse_polygon_regions,
    scan_label_ids,
    write_region_counts,
)
from fosgate.errors import InvalidInput, NotFound, Precondition
from fosgate.specs import RegionMapSpec
from fosgate.store.db import JOB_SUCCEEDED, Store, fsync_replace, new_id

if TYPE_CHECKING:
    from fosgate.jobs.runner import JobContext
    from fosgate.store.db import JobRow, SlideRow

SCAN_PIXELS = 64_000_000
SUFFIX = ".regions.csv"
SOURCES = ("geojson", "roi_zip", "label_image", "label_slide_id")


def _write(store: Store, data: bytes, suffix: str) -> str:
    folder = store.root / "regions"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = store.tmp_path(suffix)
    try:
        tmp.write_bytes(data)
        final = folder / f"{new_id('rg')}{suffix}"
        fsync_replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return f"regions/{final.name}"  # relative to the data folder: job parameters show no server paths


def _label_suffix(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ".tif"
    raise InvalidInput("The region map must be a TIFF or PNG label image (or give QuPath GeoJSON or an ImageJ ROI set).")


def stage_regions(store: Store, spec: dict[str, Any], slide: SlideRow) -> RegionMapSpec:
    """Validate a region map given for ``slide`` and store its bytes; returns the staged map's spec.

    ``spec``: exactly one of ``geojson`` / ``roi_zip`` (bytes), ``label_image`` (bytes) or
    ``label_slide_id``, plus ``names`` (bytes), ``scale`` and ``pixel_size_um`` for label maps."""
    given = [k for k in SOURCES if spec.get(k)]
    if len(given) != 1:
        raise InvalidInput("Give the regions as one of: QuPath GeoJSON, an ImageJ ROI set, or a label image with "
                           "its names table.")
    scale = float(spec.get("scale") or 0.0)
    px = float(spec.get("pixel_size_um") or 0.0)
    if px < 0 or scale < 0:
        raise InvalidInput("The pixel size and the map scale must be positive numbers.")
    out: dict[str, Any] = {"scale": scale, "pixel_size_um": px}
    kind = given[0]
    if kind in ("geojson", "roi_zip"):
        if spec.get("names"):
            raise InvalidInput("A names table goes with a label image; GeoJSON and ROI sets carry their own names.")
        data = bytes(spec[kind])
        parse_polygon_regions(data)  # refuses bad files now
        out.update(kind="polygons", path=_write(store, data, ".geojson" if kind == "geojson" else ".zip"))
        return RegionMapSpec.create(**out)
    if not spec.get("names"):
        raise InvalidInput("A label image needs its names table (a CSV id,name[,parent_id] or an Allen ontology "
                           "JSON) to say which region each id is.")
    names = bytes(spec["names"])
    regions = parse_names_table(names)
    if kind == "label_image":
        data = bytes(spec["label_image"])
        out["path"] = _write(store, data, _label_suffix(data))
    else:
        out["label_slide_id"] = store.get_slide(spec["label_slide_id"]).id
    path = _map_path(store, RegionMapSpec.create(**out))
    try:
        with LabelImage(path) as img:
            map_hw, rgb = (img.height, img.width), img.rgb
        map_scale(map_hw, (slide.info["height"], slide.info["width"]), scale)
        if map_hw[0] * map_hw[1] <= SCAN_PIXELS:
            values, _ = scan_label_ids(Path(path))
            check_label_ids(values, LabelRegions(Path(path), regions, scale), rgb)
    except InvalidInput:
        if kind == "label_image":
            Path(path).unlink(missing_ok=True)
        raise
    out.update(kind="labels", names_path=_write(store, names, ".names"))
    return RegionMapSpec.create(**out)


def _map_path(store: Store, spec: RegionMapSpec) -> Path:
    if spec.label_slide_id:
        return Path(store.get_slide(spec.label_slide_id).path)
    return store.root / spec.path


def load_region_map(store: Store, spec: RegionMapSpec) -> PolygonRegions | LabelRegions:
    if spec.kind == "polygons":
        return parse_polygon_regions(_map_path(store, spec).read_bytes())
    return LabelRegions(_map_path(store, spec), parse_names_table((store.root / spec.names_path).read_bytes()),
                        spec.scale)


def add_region_counts(store: Store, ctx: JobContext, spec: RegionMapSpec, counts_csv: Path, stem: str,
                      slide: SlideRow, start: float = 0.0, end: float = 1.0) -> Path:
    """Count the cells of ``counts_csv`` per region, write ``<stem>.regions.csv`` into the job folder and
    publish it as an artifact of the job."""
    region_map = load_region_map(store, spec)
    px = spec.pixel_size_um or float(slide.info.get("pixel_size_um") or 0.0)
    out = ctx.workdir / f"{stem}{SUFFIX}"
    ctx.progress(start, "Counting cells per region.", force=True)
    counts = write_region_counts(
        counts_csv, region_map, out, slide_hw=(slide.info["height"], slide.info["width"]), pixel_size_um=px,
        progress=lambda f, m: (ctx.check_cancel(), ctx.progress(start + (end - start) * f, m)))
    ctx.add_artifact(out)
    ctx.progress(end, f"{counts.cells_in_regions} of {counts.cells_total} cells lie in the {len(counts.rows)} "
                 f"region(s).", force=True, regions=len(counts.rows), cells_in_regions=counts.cells_in_regions,
                 cells_outside_regions=counts.cells_outside)
    return out


def prediction_counts(store: Store, job_id: str) -> tuple[JobRow, Path, str]:
    """A succeeded prediction job, its counts CSV and its output stem."""
    job = store.get_job(job_id)
    if job.kind != "predict":
        raise Precondition(f"Job {job_id} is a '{job.kind}' job; count regions on the result of a prediction job.")
    if job.state != JOB_SUCCEEDED:
        raise Precondition(f"Prediction job {job_id} has not finished successfully ({job.state}); count regions once "
                           "it has succeeded.")
    art = next((a for a in job.artifacts if a.name.endswith(".counts.csv")), None)
    if art is None or not Path(art.path).is_file():
        raise NotFound(f"Prediction job {job_id} has no counts table to count regions from.")
    return job, Path(art.path), art.name[: -len(".counts.csv")]
