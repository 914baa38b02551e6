"""The application: what the server does, in plain Python (the gRPC layer only translates).

``App`` ties the store, the job runner and the library core together: ingesting slides, storing
labels, and starting training, prediction and tile-export jobs. Every method raises the library's
errors (``fosgate.errors``) for bad input; nothing here knows about gRPC.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fosgate.config import ServerConfig
from fosgate.errors import ChecksumMismatch, Forbidden, InvalidInput, NotFound, TooLarge
from fosgate.jobs.runner import JobContext, JobRunner
from fosgate.store.db import JobRow, LabelRow, ModelRow, SlideRow, Store, fsync_replace, new_id, now

ROLES = ("image", "mask")
LABEL_SOURCES = ("human", "classical", "sam", "model", "import")
SUPPORTED_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8", ".png", ".jpg", ".jpeg")


def safe_name(name: str) -> str:
    """A file name safe to store: the last path component, odd characters replaced."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    return base or "slide.tif"


def check_suffix(name: str) -> None:
    low = name.lower()
    if not low.endswith(SUPPORTED_SUFFIXES):
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

    def close(self) -> None:
        self.runner.shutdown(wait=False)
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
        p = Path(path)
        if ".." in p.parts:
            raise Forbidden(f"'{path}' contains '..'; give a path inside the server's image folders.")
        resolved = p.resolve()
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
                  source: str, reviewer: str, parent_id: str = "") -> LabelRow:
        """Store a mask as an accepted label for a rectangle of an image. The mask may be binary
        (0/1, 0/255) or an instance-label image; any non-zero pixel is foreground."""
        import tifffile
        from scipy import ndimage

        if source not in LABEL_SOURCES:
            raise InvalidInput(f"Unknown label source '{source}'; use one of {', '.join(LABEL_SOURCES)}.")
        image = self.store.get_slide(slide_id)
        mask_row = self.store.get_slide(mask_slide_id)
        h, w = image.info["height"], image.info["width"]
        mh, mw = mask_row.info["height"], mask_row.info["width"]
        if mh * mw > self.config.max_label_pixels:
            raise TooLarge(f"The mask is {mw}x{mh} px; labels are stored per tile or image up to "
                           f"{self.config.max_label_pixels:,} pixels. Split it into smaller regions.")
        x, y, rw, rh = region if region and region[2] and region[3] else (0, 0, w, h)
        if x < 0 or y < 0 or x + rw > w or y + rh > h:
            raise InvalidInput(f"The label region {rw}x{rh} at ({x}, {y}) lies outside the {w}x{h} image.")
        if (mw, mh) != (rw, rh):
            raise InvalidInput(f"The mask is {mw}x{mh} px but the labelled region of the image is {rw}x{rh} px; "
                               "they must match.")
        with self.open_slide(mask_row) as ms:
            mask = ms.read(0, mh, 0, mw)
        mask = mask.max(axis=-1) if mask.ndim == 3 else mask
        values = np.unique(mask)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            labels = mask.astype(np.uint32)
            objects = int(np.count_nonzero(values))
        else:
            labels, objects = ndimage.label(mask > 0)
            labels = labels.astype(np.uint32)
        label_id = new_id("lb")
        tmp = self.store.tmp_path(".tif")
        tifffile.imwrite(tmp, labels, compression="zlib")
        final = self.store.label_path(label_id)
        fsync_replace(tmp, final)
        version = 1
        if parent_id:
            try:
                version = self.store.get_label(parent_id).version + 1
            except NotFound:
                version = 1
        row = LabelRow(label_id, slide_id, str(final), int(x), int(y), int(rw), int(rh), source, reviewer or "",
                       now(), parent_id or "", version, int(np.count_nonzero(labels)), objects)
        return self.store.add_label(row)

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
        thr = float(params.get("threshold") or 0.5)
        if not 0.0 < thr < 1.0:
            raise InvalidInput(f"The threshold must lie strictly between 0 and 1 (got {thr}).")
        region = params.get("region")
        if region and region[2] and region[3]:
            x, y, w, h = region
            if x < 0 or y < 0 or x + w > slide.info["width"] or y + h > slide.info["height"]:
                raise InvalidInput(f"The region {w}x{h} at ({x}, {y}) lies outside the "
                                   f"{slide.info['width']}x{slide.info['height']} slide.")
        params = {**params, "threshold": thr, "tile_size": tile, "halo": halo}
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

    # ------------------------------------------------------------------ models
    def model_dir(self, model: ModelRow) -> Path:
        return Path(model.path)

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def job_context_workdir(ctx: JobContext) -> Path:
    d = ctx.workdir
    os.makedirs(d, exist_ok=True)
    return d
