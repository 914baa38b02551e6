"""Job bodies: training, prediction and tile export, run by ``JobRunner`` on a worker thread.

Each reads its parameters from ``ctx.params`` (validated by ``App`` before submission), calls the
library core, publishes its files as artifacts and returns a result id (e.g. the new model id).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fosgate.errors import InvalidInput
from fosgate.jobs.runner import JobContext
from fosgate.names import check_stem, safe_name, stem_of
from fosgate.store.db import ModelRow, new_id, now

if TYPE_CHECKING:
    from fosgate.app import App


def _load_pairs(app: App, label_ids: list[str], normalization):
    """Training pairs (image region, mask) for the given labels; images are normalised with the
    statistics of their whole slide, as prediction will do, and carry the slide's pixel size."""
    import tifffile

    from fosgate.core.training import TrainingPair

    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pairs = []
    for lid in label_ids:
        label = app.store.get_label(lid)
        slide_row = app.store.get_slide(label.slide_id)
        with app.open_slide(slide_row) as slide:
            if slide_row.id not in stats:
                stats[slide_row.id] = normalization.stats(slide)
            image = slide.read(label.y, label.y + label.height, label.x, label.x + label.width)
            px = float(slide.info.pixel_size_um or 0.0)
        mask = tifffile.imread(label.path)
        lo, hi = stats[slide_row.id]
        pairs.append(TrainingPair(image=image, mask=mask, name=f"{slide_row.name}:{lid}", lo=lo, hi=hi,
                                  pixel_size_um=px))
    channels = {p.image.shape[-1] for p in pairs}
    if len(channels) > 1:
        raise InvalidInput("The labelled images mix grey and colour slides; train one model per kind of image "
                           "(choose the same --channel for all slides).")
    return pairs


def run_training(app: App, ctx: JobContext) -> str:
    from fosgate.core.model import FosgateModel
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, plot_training_curve, train_model
    from fosgate.core.unet import DEFAULT_ARCH

    p = ctx.params
    base = None
    if p.get("base_model_id"):
        base = FosgateModel.load(app.store.get_model(p["base_model_id"]).path)
        normalization = base.normalization
    else:
        normalization = Normalization()
    ctx.progress(0.0, "Reading the labelled images.", force=True)
    pairs = _load_pairs(app, p["label_ids"], normalization)
    config = TrainConfig(
        epochs=int(p["epochs"]), tile_size=int(p["tile_size"]), batch_size=int(p.get("batch_size") or 8),
        val_fraction=float(p.get("val_fraction") or 0.2), seed=int(p.get("seed") or 0),
        learning_rate=float(p.get("learning_rate") or 1e-3), steps_per_epoch=int(p.get("steps_per_epoch") or 0) or None,
        patience=int(p.get("patience") or 0), arch=p.get("arch") or DEFAULT_ARCH,
        pixel_size_um=float(p.get("pixel_size_um") or 0.0),
    )

    def on_epoch(r) -> None:
        obj = "" if r.object_f1 != r.object_f1 else f", object F1 {r.object_f1:.3f}"
        ctx.progress(r.epoch / r.epochs, f"Epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f}, val loss {r.val_loss:.4f}"
                     f"{obj}, pixel F1 {r.pixel_f1:.3f}, MIoU {r.pixel_miou:.3f}.", force=True,
                     epoch=r.epoch, epochs=r.epochs, loss=r.loss, val_loss=r.val_loss, object_f1=r.object_f1,
                     pixel_f1=r.pixel_f1, pixel_miou=r.pixel_miou)

    name = p.get("name") or "unet"
    model_id = new_id("md")
    model = train_model(pairs, config, normalization=normalization, base=base, on_epoch=on_epoch,
                        should_cancel=ctx.cancelled, model_id=model_id, name=name,
                        label_ids=list(p["label_ids"]), parent_model_id=p.get("base_model_id") or "")
    ctx.check_cancel()
    model.version = app.store.next_model_version(name)
    model.created = now()
    directory = model.save(app.store.model_dir(model_id))
    curve = plot_training_curve(model.history, ctx.workdir / "training_curve.png")
    ctx.add_artifact(curve)
    meta = model.meta_dict()
    app.store.add_model(ModelRow(model_id, name, model.version, str(directory), meta, model.created, ctx.job_id))
    post = model.post
    ctx.progress(1.0, f"Saved model {model_id} ({name} v{model.version}, {model.arch}); post-processing: threshold "
                 f"{post.threshold:g}, seed level {post.seed_threshold:g}, min size {post.min_size_px} px.",
                 force=True, **model.metrics)
    return model_id


def run_prediction(app: App, ctx: JobContext) -> str:
    from fosgate.core.model import FosgateModel, PredictOptions

    p = ctx.params
    slide_row = app.store.get_slide(p["slide_id"])
    model_row = app.store.get_model(p["model_id"])
    ctx.progress(0.0, "Loading the model.", force=True)
    model = FosgateModel.load(model_row.path)
    calibrated = bool(model.metrics.get("calibrated")) or "val_pixel_f1_pooled_at_threshold" in model.metrics
    origin = "" if p.get("threshold") else (" (the model's own, calibrated at training)" if calibrated
                                            else " (the default; the model was trained without a validation split)")
    min_size = p.get("min_size")
    options = PredictOptions(
        tile=int(p.get("tile_size") or 0), halo=int(p.get("halo") or 0),
        region=tuple(p["region"]) if p.get("region") and p["region"][2] and p["region"][3] else None,
        memory_budget=app.config.predict_memory_bytes, tta=bool(p.get("tta")),
        pixel_size_um=float(p.get("pixel_size_um") or 0.0),
        threshold=float(p["threshold"]) if p.get("threshold") else None,
        seed_threshold=float(p["seed_threshold"]) if p.get("seed_threshold") else None,
        min_size_px=int(min_size) if min_size else None,
        min_area_um2=float(p["min_area_um2"]) if p.get("min_area_um2") else None,
        split_touching=True if p.get("split_touching") else None,
    )
    post = model.resolve_post(options)
    ctx.progress(0.0, f"Probability threshold {post.threshold:g}{origin}.", force=True)
    stem = check_stem(p.get("stem") or "") or safe_name(stem_of(slide_row.name), default="slide")
    with app.open_slide(slide_row) as slide:
        out = model.predict_slide(slide, ctx.workdir, stem, options, backend=app.executor,
                                  progress=lambda f, m: ctx.progress(f, m), should_cancel=ctx.cancelled)
    if out.halo < model.receptive_field:
        ctx.progress(0.99, f"Warning: the {out.halo}-px halo is smaller than the model's receptive field "
                     f"({model.receptive_field} px); tile seams may differ from a single pass.", force=True)
    for path in out.paths.values():
        ctx.add_artifact(path)
    used = out.post
    ctx.progress(1.0, f"Found {out.count} cells in {out.seconds:.1f} s.", force=True, count=out.count,
                 seconds=out.seconds, tile_height=out.tile[0], tile_width=out.tile[1], windows=out.windows, halo=out.halo,
                 megapixels_per_second=out.width * out.height / 1e6 / max(out.seconds, 1e-9),
                 threshold=used.threshold, seed_threshold=used.seed_threshold, min_size_px=used.min_size_px,
                 scale_factor=out.factor, tta=float(options.tta))
    return slide_row.id


def run_tile_export(app: App, ctx: JobContext) -> str:
    from fosgate.core.tiling import export_tiles

    p = ctx.params
    slide_row = app.store.get_slide(p["slide_id"])
    region = tuple(p["region"]) if p.get("region") and p["region"][2] and p["region"][3] else None
    out = ctx.workdir / "tiles"
    with app.open_slide(slide_row) as slide:
        export_tiles(slide, out, tile=p["tile_size"], margin=p["margin"], fmt=p["format"], region=region,
                     progress=lambda d, t: (ctx.check_cancel(), ctx.progress(0.9 * d / max(t, 1), f"Tile {d}/{t}.")))
    archive = shutil.make_archive(str(ctx.workdir / "tiles"), "zip", out)
    shutil.rmtree(out, ignore_errors=True)
    ctx.add_artifact(archive)
    return slide_row.id


def run_clustering(app: App, ctx: JobContext) -> str:
    from fosgate.core.clustering import cluster_tiles, plot_clusters, write_cluster_csv
    from fosgate.store.db import ClusteringRow

    p = ctx.params
    slide_row = app.store.get_slide(p["slide_id"])
    region = tuple(p["region"]) if p.get("region") and p["region"][2] and p["region"][3] else None
    encode = None
    if app.executor is not None:
        def encode(encoder, tiles, lo, hi, tile, origin):
            path = ctx.workdir / "encoder.keras"
            encoder.save(path)
            return app.executor.encode(encoder_path=str(path), slide_path=slide_row.path, channel=slide_row.channel,
                                       tiles=tiles, lo=lo, hi=hi, tile=tile, origin=origin)
    with app.open_slide(slide_row) as slide:
        result = cluster_tiles(slide, tile=p["tile_size"], margin=p["margin"], k=p["k"], seed=int(p.get("seed") or 0),
                               epochs=p["epochs"], max_tiles=p["max_tiles"], region=region,
                               progress=lambda f, m: ctx.progress(0.9 * f, m), should_cancel=ctx.cancelled,
                               encode=encode)
        ctx.progress(0.9, "Drawing the cluster pictures.", force=True)
        pictures = plot_clusters(result, slide, ctx.workdir / "pictures")
    csv_path = write_cluster_csv(result, ctx.workdir / "clusters.csv")
    for path in [csv_path, *pictures]:
        ctx.add_artifact(path)
    sizes = np.bincount(result.clusters, minlength=result.k).tolist()
    cid = new_id("cl")
    app.store.add_clustering(ClusteringRow(cid, slide_row.id, ctx.job_id, str(csv_path), result.k, p["tile_size"],
                                           sizes, now()))
    ctx.progress(1.0, f"{len(result.tiles)} tiles in {result.k} clusters of sizes {sizes}.", force=True,
                 tiles=len(result.tiles))
    return cid


def run_autolabel(app: App, ctx: JobContext) -> str:
    """Proposals for each region; each one is stored as soon as it is made (a cancelled job keeps them)."""
    from fosgate.core.autolabel import ModelProposer, classical_proposal

    p = ctx.params
    slide_row = app.store.get_slide(p["slide_id"])
    regions = [tuple(r) for r in p["regions"]]
    method = p["method"]
    if method == "sam":
        return _run_sam_autolabel(app, ctx, slide_row, regions)
    if app.executor is not None:
        return _run_autolabel_dask(app, ctx, slide_row, regions, method)
    with app.open_slide(slide_row) as slide:
        if method == "model":
            from fosgate.core.model import FosgateModel

            proposer = ModelProposer(FosgateModel.load(app.store.get_model(p["model_id"]).path), slide)
        for i, region in enumerate(regions):
            ctx.check_cancel()
            uncertainty = 0.0
            if method == "classical":
                labels = classical_proposal(slide, region)
            else:
                labels, uncertainty = proposer(region)
            app.add_proposal(slide_row.id, labels, region, method, ctx.job_id, uncertainty)
            ctx.progress((i + 1) / len(regions), f"Proposed labels for tile {i + 1}/{len(regions)}.")
    ctx.progress(1.0, f"{len(regions)} proposals waiting for review.", force=True, proposals=len(regions))
    return slide_row.id


def _run_autolabel_dask(app: App, ctx: JobContext, slide_row, regions: list[tuple], method: str) -> str:
    """Classical or model proposals as Dask tasks (batches of tiles); each stored as it arrives."""
    model_dir = app.store.get_model(ctx.params["model_id"]).path if method == "model" else ""

    def on_result(i: int, labels, uncertainty: float, done: int) -> None:
        app.add_proposal(slide_row.id, labels, regions[i], method, ctx.job_id, uncertainty)
        ctx.progress(done / len(regions), f"Proposed labels for tile {done}/{len(regions)}.")

    app.executor.propose(method=method, model_dir=model_dir, slide_path=slide_row.path, channel=slide_row.channel,
                         regions=regions, on_result=on_result, should_cancel=ctx.cancelled)
    ctx.progress(1.0, f"{len(regions)} proposals waiting for review.", force=True, proposals=len(regions))
    return slide_row.id


def _run_sam_autolabel(app: App, ctx: JobContext, slide_row, regions: list[tuple]) -> str:
    """SAM proposals from a child process (see ``fosgate.jobs.sam_process``); each stored on arrival."""
    import tifffile

    from fosgate.jobs.sam_process import run_sam

    sp = ctx.params.get("sam") or {}
    thresholds = bool(sp.get("has_thresholds"))
    spec = {
        "checkpoint": str(app.config.sam_checkpoint), "model_type": app.config.sam_model_type,
        "slide_path": slide_row.path, "channel": slide_row.channel, "regions": [list(r) for r in regions],
        "out_dir": str(ctx.workdir / "sam"), "points_per_side": int(sp.get("points_per_side") or 16),
        "filter": {"min_area": int(sp.get("min_area") or 20), "max_area": int(sp.get("max_area") or 5000),
                   "pred_iou_thresh": float(sp.get("pred_iou_thresh") or 0.0) if thresholds else 0.8,
                   "stability_score_thresh": float(sp.get("stability_score_thresh") or 0.0) if thresholds else 0.85},
    }
    totals = {"sam_masks_generated": 0, "sam_masks_kept": 0}

    def on_tile(msg: dict) -> None:
        i = msg["index"]
        labels = tifffile.imread(msg["path"])
        app.add_proposal(slide_row.id, labels, tuple(regions[i]), "sam", ctx.job_id)
        totals["sam_masks_generated"] += msg["generated"]
        totals["sam_masks_kept"] += msg["kept"]
        ctx.progress((i + 1) / len(regions), f"Segment Anything: tile {i + 1}/{len(regions)}, "
                     f"{msg['kept']} of {msg['generated']} masks kept.")

    ctx.progress(0.0, "Loading Segment Anything.", force=True)
    run_sam(spec, ctx.workdir, on_tile, should_cancel=ctx.cancelled)
    ctx.progress(1.0, f"{len(regions)} proposals waiting for review.", force=True, proposals=len(regions), **totals)
    return slide_row.id


def run_dataset_export(app: App, ctx: JobContext) -> str:
    """images/<label>.<fmt> (the labelled region) and masks/<label>.tif (uint16/uint32 instances) + labels.csv."""
    import csv

    import tifffile

    p = ctx.params
    out = ctx.workdir / "dataset"
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["label_id", "slide", "x", "y", "width", "height", "source", "reviewer", "created", "parent_id",
                     "version", "objects"])
        for i, lid in enumerate(p["label_ids"]):
            ctx.check_cancel()
            lb = app.store.get_label(lid)
            slide_row = app.store.get_slide(lb.slide_id)
            with app.open_slide(slide_row) as slide:
                img = slide.read(lb.y, lb.y + lb.height, lb.x, lb.x + lb.width)
            _write_tile(img, tifffile.imread(lb.path), out / "images" / lid, out / "masks" / f"{lid}.tif", p["format"])
            wr.writerow([lid, slide_row.name, lb.x, lb.y, lb.width, lb.height, lb.source, lb.reviewer, lb.created,
                         lb.parent_id, lb.version, lb.objects])
            ctx.progress(0.9 * (i + 1) / len(p["label_ids"]), f"Exported label {i + 1}/{len(p['label_ids'])}.")
    archive = shutil.make_archive(str(ctx.workdir / "dataset"), "zip", out)
    shutil.rmtree(out, ignore_errors=True)
    ctx.add_artifact(archive)
    return ""


def run_proposal_export(app: App, ctx: JobContext) -> str:
    """Everything a reviewer needs to judge proposals in Fiji or QuPath, in one zip."""
    import csv

    import tifffile
    from shapely.affinity import translate

    from fosgate.core.exports import iter_object_polygons, write_geojson, write_roi_zip
    from fosgate.core.instances import measure_labels

    ids = ctx.params["proposal_ids"]
    out = ctx.workdir / "proposals"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "proposals.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["proposal_id", "slide_id", "slide", "x", "y", "width", "height", "source", "state", "objects",
                     "uncertainty"])
        for i, pid in enumerate(ids):
            ctx.check_cancel()
            prop = app.store.get_proposal(pid)
            slide_row = app.store.get_slide(prop.slide_id)
            with app.open_slide(slide_row) as slide:
                img = slide.read(prop.y, prop.y + prop.height, prop.x, prop.x + prop.width)
            labels = tifffile.imread(prop.path)
            _write_tile(img, labels, out / pid, out / f"{pid}.labels.tif")
            polygons = list(iter_object_polygons(labels, measure_labels(labels)))
            write_roi_zip(out / f"{pid}.rois.zip", polygons)
            write_geojson(out / f"{pid}.geojson", [(o, translate(g, prop.x, prop.y)) for o, g in polygons])
            wr.writerow([pid, prop.slide_id, slide_row.name, prop.x, prop.y, prop.width, prop.height, prop.source,
                         prop.state, prop.objects, f"{prop.uncertainty:.4f}"])
            ctx.progress(0.9 * (i + 1) / len(ids), f"Packed proposal {i + 1}/{len(ids)}.")
    archive = shutil.make_archive(str(ctx.workdir / "proposals"), "zip", out)
    shutil.rmtree(out, ignore_errors=True)
    ctx.add_artifact(archive)
    return ""


def _write_tile(img: np.ndarray, labels: np.ndarray, image_path: Path, labels_path: Path, fmt: str = "png") -> Path:
    """A labelled tile as files: the image as PNG (8-bit; 16-bit images always as TIFF) or TIFF, and
    its instance labels as uint16 (uint32 above 65,534 objects) TIFF. Returns the image's path."""
    import tifffile
    from PIL import Image

    img = img[..., 0] if img.shape[-1] == 1 else img
    if fmt == "png" and img.dtype == np.uint8:
        image_path = image_path.with_suffix(".png")
        Image.fromarray(img).save(image_path)
    else:
        image_path = image_path.with_suffix(".tif")
        tifffile.imwrite(image_path, img)
    dtype = np.uint16 if labels.max() < 65535 else np.uint32
    tifffile.imwrite(labels_path, labels.astype(dtype), compression="zlib")
    return image_path
