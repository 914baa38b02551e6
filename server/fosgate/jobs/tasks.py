"""Job bodies: training, pretraining, prediction, tile export and the labelling loop, run by ``JobRunner`` on a
worker thread.

Each gets its frozen spec (``fosgate.specs``, validated and checked against the store by
``fosgate.submit`` before submission; the job row holds the same spec as JSON) and a :class:`TaskEnv`,
calls the library core, publishes its files as artifacts and returns a result id (e.g. the new model id).
No task reads a parameter with a fallback: the spec already holds the value to use.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fosgate.config import ServerConfig
from fosgate.errors import InvalidInput
from fosgate.jobs.runner import JobContext
from fosgate.names import check_stem, safe_name, stem_of
from fosgate.specs import (
    AutoLabelSpec,
    ClusterSpec,
    CountRegionsSpec,
    ExportDatasetSpec,
    ExportModelSpec,
    ExportProposalsSpec,
    ExportTilesSpec,
    PredictSpec,
    PretrainSpec,
    TrainSpec,
)
from fosgate.store.db import ModelRow, Store, new_id, now

if TYPE_CHECKING:
    from fosgate.ingest import SlideIngest
    from fosgate.review import Labels


@dataclass(frozen=True)
class TaskEnv:
    """What a task may use: the store, slide access, proposal storage, the configuration and Dask."""

    config: ServerConfig
    store: Store
    slides: SlideIngest
    labels: Labels
    executor: Any = None

    def open_slide(self, row):
        return self.slides.open_slide(row)

    def add_proposal(self, *args, **kwargs):
        return self.labels.add_proposal(*args, **kwargs)


def _load_pairs(app: TaskEnv, label_ids: list[str], normalization):
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


def run_training(app: TaskEnv, ctx: JobContext, spec: TrainSpec) -> str:
    from fosgate.core.model import FosgateModel
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import plot_training_curve, train_model

    base = None
    if spec.base_model_id:
        base = FosgateModel.load(app.store.get_model(spec.base_model_id).path)
        normalization = base.normalization
    else:
        normalization = Normalization()
    ctx.progress(0.0, "Reading the labelled images.", force=True)
    pairs = _load_pairs(app, list(spec.label_ids), normalization)
    config = spec.train_config()

    def on_epoch(r) -> None:
        obj = "" if r.object_f1 != r.object_f1 else f", object F1 {r.object_f1:.3f}"
        ctx.progress(r.epoch / r.epochs, f"Epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f}, val loss {r.val_loss:.4f}"
                     f"{obj}, pixel F1 {r.pixel_f1:.3f}, MIoU {r.pixel_miou:.3f}.", force=True,
                     epoch=r.epoch, epochs=r.epochs, loss=r.loss, val_loss=r.val_loss, object_f1=r.object_f1,
                     pixel_f1=r.pixel_f1, pixel_miou=r.pixel_miou)

    name = spec.name
    model_id = new_id("md")
    model = train_model(pairs, config, normalization=normalization, base=base, on_epoch=on_epoch,
                        should_cancel=ctx.cancelled, model_id=model_id, name=name, label_ids=list(spec.label_ids),
                        parent_model_id=spec.base_model_id)
    ctx.check_cancel()
    model.version = app.store.next_model_version(name)
    model.created = now()
    directory = model.save(app.store.model_dir(model_id))
    curve = plot_training_curve(model.history, ctx.workdir / "training_curve.png")
    ctx.add_artifact(curve)
    app.store.add_model(ModelRow(model_id, name, model.version, str(directory), model.meta_dict(), model.created,
                                 ctx.job_id))
    post = model.post
    ctx.progress(1.0, f"Saved model {model_id} ({name} v{model.version}, {model.arch}); post-processing: "
                 f"{post.describe(model.arch)}.", force=True, **model.metrics)
    return model_id


#: sampled unlabelled tiles darker than this mean normalised intensity are redrawn (empty glass teaches nothing)
PRETRAIN_MIN_SIGNAL = 0.02
#: slides are read at the model's pixel size; one more than this factor finer or coarser is refused
MAX_PRETRAIN_RESCALE = 8.0


def _slide_pixel_um(row) -> float:
    return float(row.info.get("pixel_size_um") or 0.0)


def pretrain_pixel_size(spec: PretrainSpec, rows: list) -> float:
    """The pretrained model's µm per pixel: the spec's, else the median of the slides' known pixel sizes,
    else 0 (unknown; no slide is then rescaled)."""
    if spec.pixel_size_um:
        return float(spec.pixel_size_um)
    known = [px for px in map(_slide_pixel_um, rows) if px > 0]
    return float(np.median(known)) if known else 0.0


def check_pretrain_scales(rows: list, model_px: float) -> None:
    """InvalidInput when a slide would have to be resampled by more than :data:`MAX_PRETRAIN_RESCALE` to
    reach the model's pixel size (a tile would then read a huge window, or mostly interpolation)."""
    from fosgate.core.rescale import scale_factor

    for row in rows:
        f = scale_factor(_slide_pixel_um(row), model_px)
        if not 1 / MAX_PRETRAIN_RESCALE <= f <= MAX_PRETRAIN_RESCALE:
            raise InvalidInput(f"Slide '{row.name}' has {_slide_pixel_um(row):g} µm pixels, more than "
                               f"{MAX_PRETRAIN_RESCALE:g} times {'finer' if f < 1 else 'coarser'} than the "
                               f"{model_px:g} µm the model is to work at; give a pixel size closer to the slides' "
                               "(--pixel-size), or none to use theirs.")


def _sample_unlabelled_tiles(app: TaskEnv, ctx: JobContext, spec: PretrainSpec, rows: list, normalization,
                             model_px: float) -> np.ndarray:
    """``spec.tiles`` normalised tiles (n, t, t, C) from the slides, in proportion to their areas at the
    model's pixel size. One slide is open at a time and read window by window; each is normalised with
    the statistics of the whole slide and read at the model's scale, as prediction will read it."""
    from fosgate.core.pretrain import SlideAtScale, allocate_tiles, sample_tiles
    from fosgate.core.rescale import scale_factor, scaled_size

    factors = [scale_factor(_slide_pixel_um(r), model_px) for r in rows]
    areas = [scaled_size(r.info["height"], f) * scaled_size(r.info["width"], f) for r, f in zip(rows, factors,
                                                                                             strict=True)]
    counts = allocate_tiles(areas, spec.tiles, spec.seed)
    tile = spec.tile_size
    out = np.zeros((spec.tiles, tile, tile, int(rows[0].info["channels"])), np.float32)
    done = 0
    for k, (row, f, count) in enumerate(zip(rows, factors, counts, strict=True)):
        ctx.check_cancel()
        if count:
            with app.open_slide(row) as slide:
                stats = normalization.stats(slide)  # the whole slide's, at its own pixels, as prediction does
                view = slide if f == 1.0 else SlideAtScale(slide, f, model_px)
                out[done:done + count] = sample_tiles([view], normalization, count, tile, seed=spec.seed + k,
                                                      min_signal=PRETRAIN_MIN_SIGNAL, stats=[stats])
            done += count
        ctx.progress(0.1 * (k + 1) / len(rows), f"Sampled {done}/{spec.tiles} unlabelled tiles "
                     f"({k + 1}/{len(rows)} slides).")
    return out


def run_pretraining(app: TaskEnv, ctx: JobContext, spec: PretrainSpec) -> str:
    """Pretrain a new network without labels (``fosgate.core.pretrain``) and register it as a model whose
    metrics say ``pretrained`` = 1 and whose ``label_ids`` are empty: prediction refuses it
    (``fosgate.core.model.check_segments``) until ``train --base-model`` fine-tunes it. A cancelled job
    registers nothing."""
    from fosgate import __version__
    from fosgate.core.model import FosgateModel
    from fosgate.core.normalize import Normalization
    from fosgate.core.pretrain import plot_pretraining_curve, pretrain

    rows = [app.store.get_slide(sid) for sid in spec.slide_ids]
    model_px = pretrain_pixel_size(spec, rows)
    normalization = Normalization()  # what a new model trains and predicts with; fine-tuning keeps it
    ctx.progress(0.0, f"Sampling {spec.tiles} unlabelled tiles of {spec.tile_size} px from {len(rows)} slide(s).",
                 force=True)
    tiles = _sample_unlabelled_tiles(app, ctx, spec, rows, normalization, model_px)
    ctx.check_cancel()
    model_id = new_id("md")
    model = FosgateModel.create(spec.arch, int(tiles.shape[-1]), normalization, seed=spec.seed,
                                pixel_size_um=model_px, model_id=model_id, name=spec.name)

    def on_epoch(epoch: int, epochs: int, val_loss: float) -> None:
        ctx.progress(0.1 + 0.85 * epoch / epochs, f"Epoch {epoch}/{epochs}: masked reconstruction loss "
                     f"{val_loss:.4f} (held-out tiles).", force=True, epoch=epoch, epochs=epochs,
                     mim_val_loss=val_loss)

    result = pretrain(model.network, tiles, spec.pretrain_config(), on_epoch=on_epoch, should_cancel=ctx.cancelled)
    ctx.check_cancel()
    del tiles
    history = result.history
    model.history = history
    model.metrics = {"pretrained": 1.0, "mim_loss": history["loss"][-1], "mim_val_loss": history["val_loss"][-1],
                     "pretrain_seconds": result.seconds, "tiles": float(spec.tiles),
                     "epochs_run": float(len(history["loss"])), "steps_per_epoch": float(spec.steps_per_epoch),
                     "tile_size": float(spec.tile_size), "patch_size": float(spec.patch_size),
                     "mask_ratio": float(spec.mask_ratio)}
    model.train_tile_size = spec.tile_size
    model.fosgate_version = __version__
    model.version = app.store.next_model_version(spec.name)
    model.created = now()
    directory = model.save(app.store.model_dir(model_id))
    ctx.add_artifact(plot_pretraining_curve(history, ctx.workdir / "pretraining_curve.png"))
    app.store.add_model(ModelRow(model_id, spec.name, model.version, str(directory), model.meta_dict(),
                                 model.created, ctx.job_id))
    ctx.progress(1.0, f"Saved pretrained model {model_id} ({spec.name} v{model.version}, {model.arch}); it cannot "
                 f"segment yet: fine-tune it with fosgate train --base-model {model_id}.", force=True,
                 **model.metrics)
    return model_id


def run_prediction(app: TaskEnv, ctx: JobContext, spec: PredictSpec) -> str:
    from fosgate.core.model import FosgateModel

    slide_row = app.store.get_slide(spec.slide_id)
    model_row = app.store.get_model(spec.model_id)
    ctx.progress(0.0, "Loading the model.", force=True)
    model = FosgateModel.load(model_row.path)
    options = spec.predict_options(app.config.predict_memory_bytes)
    post = model.resolve_post(options)
    calibrated = bool(model.metrics.get("calibrated")) or "val_pixel_f1_pooled_at_threshold" in model.metrics
    origin = "" if spec.threshold else (" (the model's own, calibrated at training)" if calibrated
                                        else " (the default; the model was trained without a validation split)")
    ctx.progress(0.0, f"Probability threshold {post.threshold:g}{origin}.", force=True)
    stem = check_stem(spec.stem) or safe_name(stem_of(slide_row.name), default="slide")
    with app.open_slide(slide_row) as slide:
        out = model.predict_slide(slide, ctx.workdir, stem, options, backend=app.executor,
                                  progress=lambda f, m: ctx.progress(f, m), should_cancel=ctx.cancelled)
    if out.halo < model.receptive_field:
        ctx.progress(0.99, f"Warning: the {out.halo}-px halo is smaller than the model's receptive field "
                     f"({model.receptive_field} px); tile seams may differ from a single pass.", force=True)
    for path in out.paths.values():
        ctx.add_artifact(path)
    if spec.region_map.kind:
        from fosgate.jobs.region_counts import add_region_counts

        add_region_counts(app.store, ctx, spec.region_map, out.paths["counts"], stem, slide_row, 0.97, 0.99)
    used = out.post
    ctx.progress(1.0, f"Found {out.count} cells in {out.seconds:.1f} s.", force=True, count=out.count,
                 seconds=out.seconds, tile_height=out.tile[0], tile_width=out.tile[1], windows=out.windows, halo=out.halo,
                 megapixels_per_second=out.width * out.height / 1e6 / max(out.seconds, 1e-9),
                 threshold=used.threshold, seed_threshold=used.seed_threshold, min_size_px=used.min_size_px,
                 scale_factor=out.factor, tta=float(options.tta))
    return slide_row.id


def run_count_regions(app: TaskEnv, ctx: JobContext, spec: CountRegionsSpec) -> str:
    """Cells per region of a finished prediction job (``fosgate.jobs.region_counts``)."""
    from fosgate.jobs.region_counts import add_region_counts, prediction_counts

    _, counts_csv, stem = prediction_counts(app.store, spec.job_id)
    add_region_counts(app.store, ctx, spec.region_map, counts_csv, stem, app.store.get_slide(spec.slide_id))
    return spec.job_id


def run_tile_export(app: TaskEnv, ctx: JobContext, spec: ExportTilesSpec) -> str:
    from fosgate.core.tiling import export_tiles

    slide_row = app.store.get_slide(spec.slide_id)
    out = ctx.workdir / "tiles"
    with app.open_slide(slide_row) as slide:
        export_tiles(slide, out, tile=spec.tile_size, margin=spec.margin, fmt=spec.format, region=spec.region,
                     progress=lambda d, t: (ctx.check_cancel(), ctx.progress(0.9 * d / max(t, 1), f"Tile {d}/{t}.")))
    archive = shutil.make_archive(str(ctx.workdir / "tiles"), "zip", out)
    shutil.rmtree(out, ignore_errors=True)
    ctx.add_artifact(archive)
    return slide_row.id


def run_model_export(app: TaskEnv, ctx: JobContext, spec: ExportModelSpec) -> str:
    """A model as a bioimage.io / Keras / SavedModel zip (``fosgate.core.export_model``); the bioimage.io
    test input is a region of one of the model's own training slides when one is still stored."""
    from fosgate.core.export_model import export_model

    row = app.store.get_model(spec.model_id)
    test_image = _export_test_image(app, row.meta) if spec.format == "bioimageio" else None
    path = export_model(row.path, ctx.workdir, spec.format, test_image=test_image, authors=list(spec.authors),
                        progress=lambda f, m: (ctx.check_cancel(), ctx.progress(0.99 * f, m)))
    ctx.add_artifact(path)
    ctx.progress(1.0, f"Exported model {row.id} as {spec.format} ({path.stat().st_size / 2**20:.1f} MB).", force=True)
    return row.id


def _export_test_image(app: TaskEnv, meta: dict, size: int = 256) -> np.ndarray | None:
    """A ``size``-px square (or larger, to fit the halo) of the first training slide that is still stored,
    centred on that label; None when there is none (the exporter then makes a synthetic image)."""
    from fosgate.core.export_model import ALIGN
    from fosgate.core.unet import required_halo
    from fosgate.errors import FosgateError

    halo = int(meta.get("halo") or required_halo(int(meta.get("receptive_field") or 0)))
    side = max(size, 2 * halo + ALIGN)
    for lid in meta.get("label_ids") or []:
        try:
            label = app.store.get_label(lid)
            slide_row = app.store.get_slide(label.slide_id)
            h, w = slide_row.info["height"], slide_row.info["width"]
            if h < side or w < side or slide_row.info["channels"] != meta.get("in_channels", 1):
                continue
            y0 = min(max(0, label.y + label.height // 2 - side // 2), h - side)
            x0 = min(max(0, label.x + label.width // 2 - side // 2), w - side)
            with app.open_slide(slide_row) as slide:
                return slide.read(y0, y0 + side, x0, x0 + side)
        except (FosgateError, OSError):
            continue
    return None


def run_clustering(app: TaskEnv, ctx: JobContext, spec: ClusterSpec) -> str:
    from fosgate.core.clustering import cluster_tiles, plot_clusters, write_cluster_csv
    from fosgate.store.db import ClusteringRow

    slide_row = app.store.get_slide(spec.slide_id)
    region = spec.region
    encode = None
    if app.executor is not None:
        def encode(encoder, tiles, lo, hi, tile, origin):
            path = ctx.workdir / "encoder.keras"
            encoder.save(path)
            return app.executor.encode(encoder_path=str(path), slide_path=slide_row.path, channel=slide_row.channel,
                                       tiles=tiles, lo=lo, hi=hi, tile=tile, origin=origin)
    with app.open_slide(slide_row) as slide:
        result = cluster_tiles(slide, tile=spec.tile_size, margin=spec.margin, k=spec.k, seed=spec.seed,
                               epochs=spec.epochs, max_tiles=spec.max_tiles, region=region,
                               progress=lambda f, m: ctx.progress(0.9 * f, m), should_cancel=ctx.cancelled,
                               encode=encode)
        ctx.progress(0.9, "Drawing the cluster pictures.", force=True)
        pictures = plot_clusters(result, slide, ctx.workdir / "pictures")
    csv_path = write_cluster_csv(result, ctx.workdir / "clusters.csv")
    for path in [csv_path, *pictures]:
        ctx.add_artifact(path)
    sizes = np.bincount(result.clusters, minlength=result.k).tolist()
    cid = new_id("cl")
    app.store.add_clustering(ClusteringRow(cid, slide_row.id, ctx.job_id, str(csv_path), result.k, spec.tile_size,
                                           sizes, now()))
    ctx.progress(1.0, f"{len(result.tiles)} tiles in {result.k} clusters of sizes {sizes}.", force=True,
                 tiles=len(result.tiles))
    return cid


def run_autolabel(app: TaskEnv, ctx: JobContext, spec: AutoLabelSpec) -> str:
    """Proposals for each region; each one is stored as soon as it is made (a cancelled job keeps them)."""
    from fosgate.core.autolabel import ModelProposer, classical_proposal

    slide_row = app.store.get_slide(spec.slide_id)
    regions = [tuple(r) for r in spec.regions]
    method = spec.method
    if method == "sam":
        return _run_sam_autolabel(app, ctx, spec, slide_row, regions)
    if app.executor is not None:
        return _run_autolabel_dask(app, ctx, spec, slide_row, regions, method)
    with app.open_slide(slide_row) as slide:
        if method == "model":
            from fosgate.core.model import FosgateModel

            proposer = ModelProposer(FosgateModel.load(app.store.get_model(spec.model_id).path), slide)
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


def _run_autolabel_dask(app: TaskEnv, ctx: JobContext, spec: AutoLabelSpec, slide_row, regions: list[tuple],
                        method: str) -> str:
    """Classical or model proposals as Dask tasks (batches of tiles); each stored as it arrives."""
    model_dir = app.store.get_model(spec.model_id).path if method == "model" else ""

    def on_result(i: int, labels, uncertainty: float, done: int) -> None:
        app.add_proposal(slide_row.id, labels, regions[i], method, ctx.job_id, uncertainty)
        ctx.progress(done / len(regions), f"Proposed labels for tile {done}/{len(regions)}.")

    app.executor.propose(method=method, model_dir=model_dir, slide_path=slide_row.path, channel=slide_row.channel,
                         regions=regions, on_result=on_result, should_cancel=ctx.cancelled)
    ctx.progress(1.0, f"{len(regions)} proposals waiting for review.", force=True, proposals=len(regions))
    return slide_row.id


def _run_sam_autolabel(app: TaskEnv, ctx: JobContext, spec: AutoLabelSpec, slide_row, regions: list[tuple]) -> str:
    """SAM proposals from a child process (see ``fosgate.jobs.sam_process``); each stored on arrival."""
    import tifffile

    from fosgate.jobs.sam_process import run_sam

    child = {
        "checkpoint": str(app.config.sam_checkpoint), "model_type": app.config.sam_model_type,
        "slide_path": slide_row.path, "channel": slide_row.channel, "regions": [list(r) for r in regions],
        "out_dir": str(ctx.workdir / "sam"), "points_per_side": spec.sam.points_per_side,
        "filter": spec.sam.filter_json(),
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
    run_sam(child, ctx.workdir, on_tile, should_cancel=ctx.cancelled)
    ctx.progress(1.0, f"{len(regions)} proposals waiting for review.", force=True, proposals=len(regions), **totals)
    return slide_row.id


def run_dataset_export(app: TaskEnv, ctx: JobContext, spec: ExportDatasetSpec) -> str:
    """images/<label>.<fmt> (the labelled region) and masks/<label>.tif (uint16/uint32 instances) + labels.csv."""
    import csv

    import tifffile

    out = ctx.workdir / "dataset"
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["label_id", "slide", "x", "y", "width", "height", "source", "reviewer", "created", "parent_id",
                     "version", "objects"])
        for i, lid in enumerate(spec.label_ids):
            ctx.check_cancel()
            lb = app.store.get_label(lid)
            slide_row = app.store.get_slide(lb.slide_id)
            with app.open_slide(slide_row) as slide:
                img = slide.read(lb.y, lb.y + lb.height, lb.x, lb.x + lb.width)
            _write_tile(img, tifffile.imread(lb.path), out / "images" / lid, out / "masks" / f"{lid}.tif", spec.format)
            wr.writerow([lid, slide_row.name, lb.x, lb.y, lb.width, lb.height, lb.source, lb.reviewer, lb.created,
                         lb.parent_id, lb.version, lb.objects])
            ctx.progress(0.9 * (i + 1) / len(spec.label_ids), f"Exported label {i + 1}/{len(spec.label_ids)}.")
    archive = shutil.make_archive(str(ctx.workdir / "dataset"), "zip", out)
    shutil.rmtree(out, ignore_errors=True)
    ctx.add_artifact(archive)
    return ""


def run_proposal_export(app: TaskEnv, ctx: JobContext, spec: ExportProposalsSpec) -> str:
    """Everything a reviewer needs to judge proposals in Fiji or QuPath, in one zip."""
    import csv

    import tifffile
    from shapely.affinity import translate

    from fosgate.core.exports import iter_object_polygons, write_geojson, write_roi_zip
    from fosgate.core.instances import measure_labels

    ids = spec.proposal_ids
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
