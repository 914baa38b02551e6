"""Turning a reviewer's edits (ImageJ ROI sets, QuPath GeoJSON) into instance label images.

Invariants
- Each ROI / feature becomes one instance, numbered in file order (1..N); where shapes overlap the
  later one wins, as when painting in Fiji.
- A pixel belongs to a shape when its centre lies inside it (ImageJ's and rasterio's rule), so a
  polygon along pixel edges (fosgate's own exports) round-trips to exactly the same pixels.
- ``offset`` (x, y) is subtracted from the coordinates: pass the tile origin for slide coordinates.
- Zip bombs: a ROI set is refused (``TooLarge``) from its directory, before anything is decompressed,
  when one member would decompress to more than :data:`MAX_ROI_MEMBER_BYTES` or all members together to
  more than :data:`MAX_ROI_TOTAL_BYTES` (``zipfile`` never decompresses past a member's declared size).
- Malformed input raises ``InvalidInput`` with a message naming the problem (deeply nested JSON
  included: never a ``RecursionError``).
- Rasterising costs each shape's own bounding box (clipped to the output), not the whole output: at
  most :data:`MAX_SHAPES` shapes and :data:`MAX_BURN_PIXELS` bounding-box pixels in all per edit.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from fosgate.errors import InvalidInput, TooLarge, invalid_input_on_error

MAX_SHAPES = 100_000
#: an ImageJ .roi is a 64-byte header plus its coordinates: 16 MiB is a million-point polygon
MAX_ROI_MEMBER_BYTES = 16 << 20
MAX_ROI_TOTAL_BYTES = 256 << 20
#: total bounding-box pixels rasterised for one edit (shapes x their own clipped boxes)
MAX_BURN_PIXELS = 400_000_000


class _Budget:
    def __init__(self, limit: int = MAX_BURN_PIXELS):
        self.left = limit

    def spend(self, pixels: int) -> None:
        self.left -= pixels
        if self.left < 0:
            raise InvalidInput(f"The shapes cover more than {MAX_BURN_PIXELS:,} pixels in total (counting each "
                               "shape's bounding box); send fewer or smaller shapes, one tile at a time.")


def _burn(out: np.ndarray, geom, value: int, budget: _Budget | None = None) -> None:
    """Paint ``geom`` into ``out`` with ``value``, rasterising only its bounding box."""
    import math

    from rasterio.transform import Affine

    from fosgate.core.pixel_raster import rasterize

    if geom.is_empty:
        return
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise InvalidInput("A shape has coordinates that are not finite numbers.")
    h, w = out.shape
    x0, y0 = max(0, int(math.floor(minx))), max(0, int(math.floor(miny)))
    x1, y1 = min(w, int(math.ceil(maxx)) + 1), min(h, int(math.ceil(maxy)) + 1)
    if x1 <= x0 or y1 <= y0:
        return  # entirely outside the tile
    if budget is not None:
        budget.spend((x1 - x0) * (y1 - y0))
    m = rasterize([(geom, 1)], out_shape=(y1 - y0, x1 - x0), dtype=np.uint8, transform=Affine.translation(x0, y0))
    view = out[y0:y1, x0:x1]
    view[m > 0] = value


def _roi_geometry(roi, dx: float, dy: float):
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    rings = roi.coordinates(multi=True)
    polys = []
    for ring in rings:
        ring = np.asarray(ring, np.float64)
        if len(ring) >= 3:
            p = Polygon(ring - [dx, dy])
            polys.append(p if p.is_valid else p.buffer(0))
    if not polys:
        return None
    if len(polys) == 1:
        return polys[0]
    # composite ROI: even-odd rule (holes are rings inside rings)
    geom = polys[0]
    for p in polys[1:]:
        geom = geom.symmetric_difference(p)
    return unary_union(geom)


def labels_from_roi_zip(data: bytes, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Instance labels from an ImageJ ROI set (.zip) or a single .roi file."""
    from roifile import ImagejRoi

    blobs: list[bytes] = []
    try:
        if data[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [i for i in zf.infolist() if i.filename.lower().endswith(".roi")]
                _check_zip_sizes(members)
                for info in members:
                    blobs.append(zf.read(info))
        elif data[:4] == b"Iout":
            blobs = [data]
        else:
            raise InvalidInput("This is not an ImageJ ROI set: expected a .zip of .roi files or a single .roi file.")
    except zipfile.BadZipFile:
        raise InvalidInput("The ROI set is not a readable zip file (it may be truncated).") from None
    if not blobs:
        raise InvalidInput("The ROI set contains no .roi files.")
    if len(blobs) > MAX_SHAPES:
        raise InvalidInput(f"The ROI set has {len(blobs)} ROIs; at most {MAX_SHAPES} per tile.")
    out = np.zeros(shape, np.uint32)
    budget = _Budget()
    for i, blob in enumerate(blobs, start=1):
        with invalid_input_on_error(lambda why, i=i: f"ROI number {i} in the set cannot be read ({why})."):
            roi = ImagejRoi.frombytes(blob)
            geom = _roi_geometry(roi, *offset)
        if geom is not None:
            _burn(out, geom, i, budget)
    return out


def _check_zip_sizes(members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb from the sizes its directory declares (``zipfile`` stops at the declared size)."""
    total = 0
    for info in members:
        if info.file_size > MAX_ROI_MEMBER_BYTES:
            raise TooLarge(f"The ROI set's member '{info.filename[-60:]}' would decompress to "
                           f"{info.file_size / 2**20:.0f} MiB; an ImageJ ROI is at most "
                           f"{MAX_ROI_MEMBER_BYTES >> 20} MiB. Save the ROI set again from Fiji's ROI Manager "
                           "(More › Save...) or send the outlines as QuPath GeoJSON.")
        total += info.file_size
    if total > MAX_ROI_TOTAL_BYTES:
        raise TooLarge(f"The ROI set would decompress to {total / 2**20:.0f} MiB, above the limit of "
                       f"{MAX_ROI_TOTAL_BYTES >> 20} MiB per request; split the outlines over several tiles.")


def geojson_features(data: bytes, what: str = "The GeoJSON") -> list:
    """The features of QuPath GeoJSON (a FeatureCollection, a list of features or one feature); bad or
    absurdly nested JSON is ``InvalidInput`` naming ``what``, never a ``RecursionError``."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON ({str(exc)[:120]}); export the objects again from QuPath "
                           "(File › Export objects as GeoJSON).") from None
    except RecursionError:
        raise InvalidInput(f"{what} is nested too deeply to be a shape list; export it again from QuPath.") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise InvalidInput(f"{what} must be a FeatureCollection, a Feature or a list of features.")
    if not isinstance(features, list):
        raise InvalidInput(f"{what} is a FeatureCollection without a 'features' list.")
    return features


def labels_from_geojson(data: bytes, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Instance labels from QuPath GeoJSON: a FeatureCollection, a list of features or one feature."""
    from shapely.affinity import translate
    from shapely.geometry import shape as to_shape

    features = geojson_features(data, "The GeoJSON")
    if len(features) > MAX_SHAPES:
        raise InvalidInput(f"The GeoJSON has {len(features)} features; at most {MAX_SHAPES} per tile.")
    out = np.zeros(shape, np.uint32)
    budget = _Budget()
    n = 0
    for i, f in enumerate(features, start=1):
        geom_json = f.get("geometry") if isinstance(f, dict) else None
        if not isinstance(geom_json, dict):
            raise InvalidInput(f"GeoJSON feature {i} has no geometry.")
        if geom_json.get("type") not in ("Polygon", "MultiPolygon"):
            continue  # points and lines are not cell outlines
        with invalid_input_on_error(lambda why, i=i: f"GeoJSON feature {i} has a malformed geometry ({why})."):
            try:
                geom = to_shape(geom_json)
            except RecursionError:
                raise InvalidInput(f"GeoJSON feature {i} is nested too deeply to be a polygon.") from None
        if not geom.is_valid:
            geom = geom.buffer(0)
        n += 1
        _burn(out, translate(geom, xoff=-offset[0], yoff=-offset[1]), n, budget)
    return out
