"""The application: what the server does, in plain Python (the gRPC layer only translates).

``App`` ties the store, the job runner and the library core together: ingesting slides, storing
labels, and starting training, prediction and tile-export jobs. Every method raises the library's
errors (``fosgate.errors``) for bad input; nothing here knows about gRPC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fosgate.config import ServerConfig
from fosgate.errors import ChecksumMismatch, Forbidden, InvalidInput, NotFound, Precondition, TooLarge
from fosgate.jobs.runner import JobRunner
from fosgate.names import check_stem, image_suffix, safe_name
from fosgate.store.db import JobRow, LabelRow, ProposalRow, SlideRow, Store, fsync_replace, new_id, now

ROLES = ("image", "mask")
LABEL_SOURCES = ("human", "classical", "sam", "model", "import")


def check_suffix(name: str) -> None:
    if not image_suffix(name):
        raise InvalidInput(
            f"'{name}' does not look like a supported image; fosgate reads TIFF, OME-TIFF, BigTIFF, PNG and JPEG "
            "files (.tif, .tiff, .ome.tif, .btf, .png, .jpg)."
        )


class App:
    """One fosgate server's state and actions."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = Store(config.data_dir)
        self.runner = JobRunner(self.store, workers=config.job_workers)
        self.executor = None
        if config.dask_scheduler != "off":
            from fosgate.distributed import DaskExecutor

            self.executor = DaskExecutor(config.dask_scheduler, workers=config.dask_workers,
                                         processes=config.dask_processes)

    def close(self) -> None:
        self.runner.shutdown(wait=False)
        if self.executor is not None:
            self.executor.close()
        self.store.close()

    # ------------------------------------------------------------------ slides
    def _slide_row(self, slide_id: str, name: str, role: str, path: Path, registered: bool,
                   channel: int | None, size: int, sha: str) -> SlideRow:
        from fosgate.core.slides import probe

        info = probe(path, channel=channel, max_pixels=self.config.max_pixels)
        info_d = asdict(info)
        return SlideRow(slide_id, name, role, str(path), registered, channel, info_d, size, sha, now())

    def upload_slide(self, name: str, role: str, channel: int | None, declared_size: int,
                     declared_sha256: str, chunks: Iterable[bytes]) -> SlideRow:
        """Store streamed bytes as a slide. The file is validated (decoded header, first and last
        rows) before it is registered; a size or checksum mismatch rejects it."""
        if role not in ROLES:
            raise InvalidInput(f"Unknown slide role '{role}'.")
        name = safe_name(name)
        check_suffix(name)
        if declared_size > self.config.max_upload_bytes:
            raise TooLarge(f"'{name}' is {declared_size / 2**30:.1f} GiB; this server accepts uploads up to "
                           f"{self.config.max_upload_bytes / 2**30:.1f} GiB. Register the file by path instead.")
        tmp = self.store.tmp_path(suffix="-" + name)
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.config.max_upload_bytes:
                        raise TooLarge(f"The upload of '{name}' exceeds this server's limit of "
                                       f"{self.config.max_upload_bytes / 2**30:.1f} GiB.")
                    h.update(chunk)
                    fh.write(chunk)
            if size == 0:
                raise InvalidInput(f"'{name}' is empty (0 bytes).")
            if declared_size and declared_size != size:
                raise ChecksumMismatch(f"The upload of '{name}' was cut short: {size} of {declared_size} bytes arrived.")
            digest = h.hexdigest()
            if declared_sha256 and declared_sha256.lower() != digest:
                raise ChecksumMismatch(f"The upload of '{name}' arrived damaged (SHA-256 mismatch); please send it again.")
            slide_id = new_id("sl")
            final = self.store.slide_dir(slide_id) / name
            row = self._slide_row(slide_id, name, role, tmp, False, channel, size, digest)
            fsync_replace(tmp, final)
            row.path = str(final)
            return self.store.add_slide(row)
        finally:
            tmp.unlink(missing_ok=True)

    def resolve_registered_path(self, path: str) -> Path:
        """A server-side path, accepted only if it resolves (symlinks followed) inside a root."""
        if not self.config.roots:
            raise Forbidden("This server has no folders configured for registration (start it with --root DIR).")
        if not path:
            raise InvalidInput("No path given.")
        if "\x00" in path or len(path) > 4096:
            raise InvalidInput("That is not a valid file path.")
        p = Path(path)
        if ".." in p.parts:
            raise Forbidden(f"'{path}' contains '..'; give a path inside the server's image folders.")
        try:
            resolved = p.resolve()
        except (OSError, RuntimeError):
            raise InvalidInput(f"The path '{path}' cannot be resolved on the server.") from None
        if not any(resolved == r or r in resolved.parents for r in self.config.roots):
            raise Forbidden(f"'{path}' is outside the folders this server may read "
                            f"({', '.join(str(r) for r in self.config.roots)}).")
        if not resolved.is_file():
            raise NotFound(f"There is no file '{path}' on the server.")
        return resolved

    def register_slide(self, path: str, role: str, channel: int | None, name: str = "") -> SlideRow:
        if role not in ROLES:
            raise InvalidInput(f"Unknown slide role '{role}'.")
        resolved = self.resolve_registered_path(path)
        check_suffix(resolved.name)
        slide_id = new_id("sl")
        row = self._slide_row(slide_id, safe_name(name or resolved.name), role, resolved, True, channel,
                              resolved.stat().st_size, "")
        return self.store.add_slide(row)

    def open_slide(self, row: SlideRow):
        from fosgate.core.slides import open_slide

        return open_slide(row.path, channel=row.channel, max_pixels=self.config.max_pixels)

    # ------------------------------------------------------------------ labels
    def add_label(self, slide_id: str, mask_slide_id: str, region: tuple[int, int, int, int] | None,
                  source: str, reviewer: str, parent_id: str = "", roi_zip: bytes = b"",
                  geojson: bytes = b"") -> LabelRow:
        """Store a mask as an accepted label for a rectangle of an image. The mask may be binary
        (0/1, 0/255) or an instance-label image (any non-zero pixel is foreground), or be given as an
        ImageJ ROI set (region coordinates) or QuPath GeoJSON (slide coordinates)."""
        from fosgate.core.edits import labels_from_geojson, labels_from_roi_zip

        if source not in LABEL_SOURCES:
            raise InvalidInput(f"Unknown label source '{source}'; use one of {', '.join(LABEL_SOURCES)}.")
        image = self.store.get_slide(slide_id)
        h, w = image.info["height"], image.info["width"]
        x, y, rw, rh = region if region and region[2] and region[3] else (0, 0, w, h)
        if x < 0 or y < 0 or x + rw > w or y + rh > h:
            raise InvalidInput(f"The label region {rw}x{rh} at ({x}, {y}) lies outside the {w}x{h} image.")
        if rw * rh > self.config.max_label_pixels:
            raise TooLarge(f"The labelled region is {rw}x{rh} px; labels are stored per tile or image up to "
                           f"{self.config.max_label_pixels:,} pixels. Split it into smaller regions.")
        if not mask_slide_id:
            if roi_zip:
                labels = labels_from_roi_zip(roi_zip, (rh, rw))
            elif geojson:
                labels = labels_from_geojson(geojson, (rh, rw), offset=(x, y))
            else:
                raise InvalidInput("Give the label as a mask image, an ImageJ ROI set or QuPath GeoJSON.")
            return self.store.add_label(self._make_label(slide_id, labels, (x, y, rw, rh), source, reviewer,
                                                         parent_id))
        mask_row = self.store.get_slide(mask_slide_id)
        mh, mw = mask_row.info["height"], mask_row.info["width"]
        if (mw, mh) != (rw, rh):
            raise InvalidInput(f"The mask is {mw}x{mh} px but the labelled region of the image is {rw}x{rh} px; "
                               "they must match.")
        with self.open_slide(mask_row) as ms:
            mask = ms.read(0, mh, 0, mw)
        row = self._make_label(slide_id, mask_to_labels(mask), (x, y, rw, rh), source, reviewer, parent_id)
        return self.store.add_label(row)

    def _make_label(self, slide_id: str, labels: np.ndarray, region: tuple[int, int, int, int], source: str,
                    reviewer: str, parent_id: str = "") -> LabelRow:
        """Write ``labels`` (uint32 instances) durably and return the row to insert."""
        import tifffile

        x, y, rw, rh = region
        label_id = new_id("lb")
        tmp = self.store.tmp_path(".tif")
        tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
        final = self.store.label_path(label_id)
        fsync_replace(tmp, final)
        version = 1
        if parent_id:
            try:
                version = self.store.get_label(parent_id).version + 1
            except NotFound:
                version = 1
        objects = int(np.count_nonzero(np.unique(labels)))
        return LabelRow(label_id, slide_id, str(final), int(x), int(y), int(rw), int(rh), source, reviewer or "",
                        now(), parent_id or "", version, int(np.count_nonzero(labels)), objects)

    # ------------------------------------------------------------------ training
    def start_training(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_training

        label_ids = params.get("label_ids") or [lb.id for lb in self.store.list_labels()]
        if not label_ids:
            raise InvalidInput("There are no labels to train on; add image/mask pairs first "
                               "(fosgate train --images DIR --masks DIR does this for you).")
        for lid in label_ids:
            self.store.get_label(lid)
        if params.get("base_model_id"):
            self.store.get_model(params["base_model_id"])
        tile = int(params.get("tile_size") or 128)
        if tile % 16 or tile < 16 or tile > 1024:
            raise InvalidInput(f"The training tile size must be a multiple of 16 between 16 and 1024 (got {tile}).")
        epochs = int(params.get("epochs") or 30)
        if not 1 <= epochs <= 10_000:
            raise InvalidInput(f"epochs must be between 1 and 10000 (got {epochs}).")
        params = {**params, "label_ids": label_ids, "tile_size": tile, "epochs": epochs}
        return self.runner.submit("train", params, lambda ctx: run_training(self, ctx))

    # ------------------------------------------------------------------ prediction
    def start_prediction(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_prediction

        slide = self.store.get_slide(params["slide_id"])
        model = self.store.get_model(params["model_id"])
        if slide.role != "image":
            raise InvalidInput("This slide was uploaded as a mask; predict on an image slide.")
        if slide.info["channels"] != model.meta["in_channels"]:
            from fosgate.errors import Precondition

            raise Precondition(
                f"Model '{model.id}' was trained on {model.meta['in_channels']}-channel images but this slide gives "
                f"{slide.info['channels']} channel(s); choose the matching channel when you upload it (--channel).")
        tile = int(params.get("tile_size") or 0)
        if tile < 0 or tile % 16 or tile > 8192:
            raise InvalidInput(f"The tile size must be a multiple of 16 up to 8192 (got {tile}).")
        halo = int(params.get("halo") or 0)
        if halo < 0 or halo > 1024:
            raise InvalidInput(f"The halo must be between 0 and 1024 px (got {halo}).")
        thr = float(params.get("threshold") or 0.0)  # 0: the model's own (calibrated at training)
        if thr and not 0.0 < thr < 1.0:
            raise InvalidInput(f"The threshold must lie strictly between 0 and 1 (got {thr}).")
        region = params.get("region")
        if region and region[2] and region[3]:
            x, y, w, h = region
            if x < 0 or y < 0 or x + w > slide.info["width"] or y + h > slide.info["height"]:
                raise InvalidInput(f"The region {w}x{h} at ({x}, {y}) lies outside the "
                                   f"{slide.info['width']}x{slide.info['height']} slide.")
        params = {**params, "threshold": thr, "tile_size": tile, "halo": halo,
                  "stem": check_stem(params.get("stem") or "")}
        return self.runner.submit("predict", params, lambda ctx: run_prediction(self, ctx))

    def start_tile_export(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_tile_export

        self.store.get_slide(params["slide_id"])
        tile = int(params.get("tile_size") or 128)
        margin = int(params.get("margin") if params.get("margin") is not None else 4)
        if tile < 8 or margin < 0 or tile - 2 * margin < 1:
            raise InvalidInput(f"A {tile}-px tile with a {margin}-px margin leaves no step; use a margin "
                               "smaller than half the tile.")
        fmt = (params.get("format") or "png").lower()
        if fmt not in ("png", "tif"):
            raise InvalidInput("Tiles are exported as 'png' or 'tif'.")
        params = {**params, "tile_size": tile, "margin": margin, "format": fmt}
        return self.runner.submit("export_tiles", params, lambda ctx: run_tile_export(self, ctx))

    # ------------------------------------------------------------------ labelling loop
    def start_clustering(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_clustering

        slide = self.store.get_slide(params["slide_id"])
        if slide.role != "image":
            raise InvalidInput("Cluster the tiles of an image slide, not of a mask.")
        tile = int(params.get("tile_size") or 128)
        margin = int(params.get("margin") if params.get("margin") is not None else 4)
        k = int(params.get("k") or 5)
        if tile % 8 or not 32 <= tile <= 512:
            raise InvalidInput(f"The clustering tile size must be a multiple of 8 between 32 and 512 (got {tile}).")
        if margin < 0 or 2 * margin >= tile:
            raise InvalidInput("The margin must be smaller than half the tile.")
        if not 2 <= k <= 50:
            raise InvalidInput(f"The number of clusters must be between 2 and 50 (got {k}).")
        epochs = int(params.get("epochs") or 10)
        if not 1 <= epochs <= 1000:
            raise InvalidInput(f"epochs must be between 1 and 1000 (got {epochs}).")
        params = {**params, "tile_size": tile, "margin": margin, "k": k, "epochs": epochs,
                  "max_tiles": int(params.get("max_tiles") or 2000)}
        return self.runner.submit("cluster", params, lambda ctx: run_clustering(self, ctx))

    def clustering_tiles(self, clustering_id: str) -> list[dict]:
        from fosgate.core.clustering import read_cluster_csv

        return read_cluster_csv(Path(self.store.get_clustering(clustering_id).path))

    def select_tiles(self, clustering_id: str, n: int, strategy: str, exclude: list[int], model_id: str = "",
                     seed: int = 0, skip_labelled: bool = False) -> list[dict]:
        """Tiles to label next (see ``fosgate.core.selection``)."""
        from fosgate.core.selection import STRATEGIES, select_tiles

        if strategy not in STRATEGIES:
            raise InvalidInput(f"Unknown selection strategy '{strategy}'; use one of {', '.join(STRATEGIES)}.")
        if n <= 0:
            raise InvalidInput("Ask for at least one tile (n >= 1).")
        row = self.store.get_clustering(clustering_id)
        tiles = self.clustering_tiles(clustering_id)
        clusters = np.array([t["cluster"] for t in tiles])
        eligible = None
        if skip_labelled:
            taken = [(lb.x, lb.y, lb.width, lb.height) for lb in self.store.list_labels(row.slide_id)]
            taken += [(p.x, p.y, p.width, p.height) for p in self.store.list_proposals(row.slide_id)
                      if p.state == "pending"]
            eligible = np.array([not any(_overlaps(t, r) for r in taken) for t in tiles], bool)
        uncertainty = None
        if strategy == "active":
            if not model_id:
                raise InvalidInput("The active strategy needs a model (--model) whose uncertainty guides the choice.")
            uncertainty = self._tile_uncertainty(row, tiles, model_id)
        picked = select_tiles(clusters, n, strategy, exclude=exclude, uncertainty=uncertainty, eligible=eligible,
                              seed=seed)
        out = [tiles[i] for i in picked]
        if uncertainty is not None:
            for t, i in zip(out, picked, strict=True):
                t["uncertainty"] = float(uncertainty[i])
        return out

    def _tile_uncertainty(self, clustering, tiles: list[dict], model_id: str) -> np.ndarray:
        from fosgate.core.autolabel import tile_uncertainty
        from fosgate.core.model import FosgateModel
        from fosgate.core.tiling import plan_crop_tiles

        model_row = self.store.get_model(model_id)
        slide_row = self.store.get_slide(clustering.slide_id)
        model = FosgateModel.load(model_row.path)
        with self.open_slide(slide_row) as slide:
            info = slide.info
            if info.channels != model.in_channels:
                raise Precondition(f"Model '{model_id}' expects {model.in_channels}-channel images; this slide has "
                                   f"{info.channels}.")
            plan = plan_crop_tiles(info.height, info.width, clustering.tile_size,
                                   _margin_of(tiles, clustering.tile_size))
            by_pos = {(t.x, t.y): t for t in plan}
            crop_tiles = [by_pos.get((t["x"], t["y"])) for t in tiles]
            if any(t is None for t in crop_tiles):  # clustering of a region: fall back to the tiles themselves
                from fosgate.core.tiling import CropTile

                crop_tiles = [CropTile(0, 0, t["y"], t["x"], t["height"], t["width"], t["y"], t["x"], t["height"],
                                       t["width"]) for t in tiles]
            return tile_uncertainty(model, slide, crop_tiles)

    def start_autolabel(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_autolabel

        slide = self.store.get_slide(params["slide_id"])
        method = params.get("method") or "classical"
        if method not in ("classical", "sam", "model"):
            raise InvalidInput(f"Unknown auto-label method '{method}'.")
        regions = [tuple(int(v) for v in r) for r in params.get("regions") or []]
        if not regions:
            raise InvalidInput("Give the tiles to label (regions), e.g. from 'fosgate select'.")
        w, h = slide.info["width"], slide.info["height"]
        for x, y, rw, rh in regions:
            if rw <= 0 or rh <= 0 or x < 0 or y < 0 or x + rw > w or y + rh > h:
                raise InvalidInput(f"The tile {rw}x{rh} at ({x}, {y}) lies outside the {w}x{h} slide.")
            if rw * rh > 4096 * 4096:
                raise TooLarge("Auto-label tiles of at most 4096 x 4096 px; split larger regions.")
        if method == "model":
            if not params.get("model_id"):
                raise InvalidInput("Model proposals need a model id.")
            model = self.store.get_model(params["model_id"])
            if model.meta["in_channels"] != slide.info["channels"]:
                raise Precondition(f"Model '{model.id}' expects {model.meta['in_channels']}-channel images; this "
                                   f"slide has {slide.info['channels']}.")
        if method == "sam":
            from fosgate.jobs.sam_process import check_sam

            # fail now with a clear status, not later in the job (loads the checkpoint in a child process)
            check_sam(self.config.sam_checkpoint, self.config.sam_model_type, self.store.tmp_path("-samcheck"))
        params = {**params, "method": method, "regions": [list(r) for r in regions]}
        return self.runner.submit("autolabel", params, lambda ctx: run_autolabel(self, ctx))

    def add_proposal(self, slide_id: str, labels: np.ndarray, region: tuple[int, int, int, int], source: str,
                     job_id: str, uncertainty: float = 0.0) -> ProposalRow:
        import tifffile

        pid = new_id("pr")
        tmp = self.store.tmp_path(".tif")
        tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
        final = self.store.proposal_path(pid)
        fsync_replace(tmp, final)
        x, y, w, h = region
        return self.store.add_proposal(ProposalRow(pid, slide_id, str(final), x, y, w, h, source, "pending",
                                                   int(np.count_nonzero(np.unique(labels))), now(), job_id,
                                                   uncertainty=float(uncertainty)))

    def review_proposal(self, proposal_id: str, decision: str, reviewer: str = "", mask_slide_id: str = "",
                        roi_zip: bytes = b"", geojson: bytes = b"", coordinates: str = "") -> tuple[ProposalRow,
                                                                                                     LabelRow | None]:
        """Accept, reject or replace a proposal. A stored label is never removed: replacing a decided
        proposal adds a new label version whose parent is the earlier label."""
        import tifffile

        from fosgate.core.edits import labels_from_geojson, labels_from_roi_zip

        prop = self.store.get_proposal(proposal_id)
        region = (prop.x, prop.y, prop.width, prop.height)
        shape = (prop.height, prop.width)
        if decision == "reject":
            return self.store.decide_proposal(proposal_id, "rejected", reviewer, None), None
        if decision == "accept":
            labels = tifffile.imread(prop.path)
            row = self._make_label(prop.slide_id, labels, region, prop.source, reviewer, parent_id=prop.id)
            return self.store.decide_proposal(proposal_id, "accepted", reviewer, row), row
        if decision != "replace":
            raise InvalidInput("A review decision is accept, reject or replace.")
        if mask_slide_id:
            mask_row = self.store.get_slide(mask_slide_id)
            if (mask_row.info["height"], mask_row.info["width"]) != shape:
                raise InvalidInput(f"The edited mask is {mask_row.info['width']}x{mask_row.info['height']} px but the "
                                   f"proposal is {prop.width}x{prop.height} px.")
            with self.open_slide(mask_row) as ms:
                labels = mask_to_labels(ms.read(0, prop.height, 0, prop.width))
        elif roi_zip:
            offset = (prop.x, prop.y) if coordinates == "slide" else (0, 0)
            labels = labels_from_roi_zip(roi_zip, shape, offset)
        elif geojson:
            offset = (0, 0) if coordinates == "tile" else (prop.x, prop.y)
            labels = labels_from_geojson(geojson, shape, offset)
        else:
            raise InvalidInput("A replacement needs the edited mask, ROI set or GeoJSON.")
        parent = prop.label_id or prop.id
        row = self._make_label(prop.slide_id, labels, region, "human", reviewer, parent_id=parent)
        return self.store.decide_proposal(proposal_id, "replaced", reviewer, row), row

    def start_proposal_export(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_proposal_export

        rows = self.store.list_proposals(params.get("slide_id", ""), params.get("state", ""), params.get("job_id", ""))
        if not rows:
            raise NotFound("There are no proposals matching that request.")
        params = {**params, "proposal_ids": [r.id for r in rows]}
        return self.runner.submit("export_proposals", params, lambda ctx: run_proposal_export(self, ctx))

    def start_dataset_export(self, params: dict[str, Any]) -> JobRow:
        from fosgate.jobs.tasks import run_dataset_export

        ids = params.get("label_ids") or [lb.id for lb in self.store.list_labels()]
        if not ids:
            raise InvalidInput("There are no labels to export yet.")
        for lid in ids:
            self.store.get_label(lid)
        fmt = (params.get("format") or "png").lower()
        if fmt not in ("png", "tif"):
            raise InvalidInput("Datasets are exported as 'png' or 'tif'.")
        params = {**params, "label_ids": ids, "format": fmt}
        return self.runner.submit("export_dataset", params, lambda ctx: run_dataset_export(self, ctx))


def mask_to_labels(mask: np.ndarray) -> np.ndarray:
    """uint32 instances from a mask: instance labels are kept, a binary mask gets 4-connected components."""
    from scipy import ndimage

    mask = mask.max(axis=-1) if mask.ndim == 3 else mask
    values = np.unique(mask)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        return mask.astype(np.uint32)
    labels, _ = ndimage.label(mask > 0, structure=ndimage.generate_binary_structure(2, 1))
    return labels.astype(np.uint32)


def _overlaps(t: dict, r: tuple[int, int, int, int]) -> bool:
    x, y, w, h = r
    return t["x"] < x + w and x < t["x"] + t["width"] and t["y"] < y + h and y < t["y"] + t["height"]


def _margin_of(tiles: list[dict], tile: int) -> int:
    xs = sorted({t["x"] for t in tiles})
    if len(xs) < 2:
        return 0
    return max(0, (tile - (xs[1] - xs[0])) // 2)
