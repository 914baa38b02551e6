"""One proposal's tile and proposed cells, as a reviewer opens them in Fiji or QuPath (``GetProposalTile``).

Small and synchronous: a proposal is one tile (typically 128-512 px), so its pixels, ROI set and GeoJSON
travel in one answer instead of a packing job.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fosgate.errors import InvalidInput, TooLarge
from fosgate.store.db import ProposalRow

if TYPE_CHECKING:
    from fosgate.app import App

MAX_TILE_BYTES = 12 << 20  # leaves room for the cells within one 16 MiB gRPC message


@dataclass
class ProposalTile:
    proposal: ProposalRow | None
    pending: int
    image_tiff: bytes = b""
    roi_zip: bytes = b""
    geojson: bytes = b""
    slide_name: str = ""


def next_pending(app: App, slide_id: str = "", job_id: str = "", skip: set[str] | frozenset = frozenset()
                 ) -> tuple[ProposalRow | None, int]:
    """The oldest pending proposal of a slide and/or job not in ``skip``, and how many are pending."""
    if slide_id:
        app.store.get_slide(slide_id)  # NOT_FOUND with a clear sentence for a wrong id
    rows = app.store.list_proposals(slide_id, "pending", job_id)
    return next((r for r in rows if r.id not in skip), None), len(rows)


def tile_tiff(img: np.ndarray) -> bytes:
    """A tile as an uncompressed, striped TIFF that ImageJ 1.x, QuPath and tifffile read: grey or RGB
    (8-bit, 3 channels) as is, other channel counts as an ImageJ hyperstack of channels."""
    import tifffile

    img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    buf = io.BytesIO()
    if img.ndim == 2:
        tifffile.imwrite(buf, img, imagej=img.dtype != np.int8, rowsperstrip=64)
    elif img.shape[-1] == 3 and img.dtype == np.uint8:
        tifffile.imwrite(buf, img, photometric="rgb", rowsperstrip=64)
    else:
        data = np.moveaxis(img, -1, 0)
        if data.dtype not in (np.uint8, np.uint16, np.float32):
            data = data.astype(np.float32)
        tifffile.imwrite(buf, data, imagej=True, metadata={"axes": "CYX"}, rowsperstrip=64)
    return buf.getvalue()


def proposal_tile(app: App, proposal_id: str = "", slide_id: str = "", job_id: str = "",
                  skip: list[str] | tuple[str, ...] = ()) -> ProposalTile:
    """The tile, ROI set (tile coordinates) and GeoJSON (slide coordinates) of one proposal: the one
    named, or else the next pending one of ``slide_id`` / ``job_id``."""
    import tifffile
    from shapely.affinity import translate

    from fosgate.core.exports import iter_object_polygons, write_geojson, write_roi_zip
    from fosgate.core.instances import measure_labels

    if proposal_id:
        prop = app.store.get_proposal(proposal_id)
        pending = len(app.store.list_proposals(prop.slide_id, "pending", job_id))
    else:
        if not slide_id and not job_id:
            raise InvalidInput("Say whose proposals to review: give a slide id, a job id or a proposal id.")
        prop, pending = next_pending(app, slide_id, job_id, set(skip))
        if prop is None:
            return ProposalTile(None, pending)
    slide_row = app.store.get_slide(prop.slide_id)
    with app.open_slide(slide_row) as slide:
        img = slide.read(prop.y, prop.y + prop.height, prop.x, prop.x + prop.width)
    image = tile_tiff(img)
    if len(image) > MAX_TILE_BYTES:
        raise TooLarge(f"The tile of proposal '{prop.id}' is {len(image) / 2**20:.1f} MB, more than one answer "
                       f"carries; fetch it with 'fosgate review fetch' instead.")
    labels = tifffile.imread(prop.path)
    polygons = list(iter_object_polygons(labels, measure_labels(labels)))
    with tempfile.TemporaryDirectory(dir=app.store.tmp_path("").parent) as tmp:
        rois = write_roi_zip(Path(tmp) / "cells.zip", polygons) if polygons else None
        gj = write_geojson(Path(tmp) / "cells.geojson", [(o, translate(g, prop.x, prop.y)) for o, g in polygons])
        roi_bytes = rois.read_bytes() if rois else b""
        gj_bytes = gj.read_bytes()
    return ProposalTile(prop, pending, image, roi_bytes, gj_bytes, slide_row.name)
