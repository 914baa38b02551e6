"""Job bodies: training, prediction and tile export, run by ``JobRunner`` on a worker thread.

Each reads its parameters from ``ctx.params`` (validated by ``App`` before submission), calls the
library core, publishes its files as artifacts and returns a result id (e.g. the new model id).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np

from fosgate.errors import InvalidInput
from fosgate.jobs.runner import JobContext
from fosgate.store.db import ModelRow, new_id, now

if TYPE_CHECKING:
    from fosgate.app import App


def _load_pairs(app: App, label_ids: list[str], normalization):
    """Training pairs (image region, mask) for the given labels; images are normalised with the
    statistics of their whole slide, as prediction will do."""
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
        mask = tifffile.imread(label.path)
        lo, hi = stats[slide_row.id]
        pairs.append(TrainingPair(image=image, mask=mask, name=f"{slide_row.name}:{lid}", lo=lo, hi=hi))
    channels = {p.image.shape[-1] for p in pairs}
    if len(channels) > 1:
        raise InvalidInput("The labelled images mix grey and colour slides; train one model per kind of image "
                           "(choose the same --channel for all slides).")
    return pairs


def run_training(app: App, ctx: JobContext) -> str:
    from fosgate import __version__
    from fosgate.core.modelio import ModelMeta, load_model, save_model
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, plot_training_curve, train_unet
    from fosgate.core.unet import receptive_field_radius

    p = ctx.params
    base = None
    if p.get("base_model_id"):
        base_row = app.store.get_model(p["base_model_id"])
        base, base_meta = load_model(base_row.path)
        normalization = Normalization.from_json(base_meta.normalization)
    else:
        normalization = Normalization()
    ctx.progress(0.0, "Reading the labelled images.", force=True)
    pairs = _load_pairs(app, p["label_ids"], normalization)
    config = TrainConfig(
        epochs=int(p["epochs"]), tile_size=int(p["tile_size"]), batch_size=int(p.get("batch_size") or 16),
        val_fraction=float(p.get("val_fraction") or 0.2), seed=int(p.get("seed") or 0),
        learning_rate=float(p.get("learning_rate") or 1e-3), steps_per_epoch=int(p.get("steps_per_epoch") or 0) or None,
    )

    def on_epoch(r) -> None:
        ctx.progress(r.epoch / r.epochs, f"Epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f}, val loss {r.val_loss:.4f}, "
                     f"pixel F1 {r.pixel_f1:.3f}, MIoU {r.pixel_miou:.3f}.", force=True,
                     epoch=r.epoch, epochs=r.epochs, loss=r.loss, val_loss=r.val_loss,
                     pixel_f1=r.pixel_f1, pixel_miou=r.pixel_miou)

    model, metrics, history = train_unet(pairs, normalization, config, model=base, on_epoch=on_epoch,
                                         should_cancel=ctx.cancelled)
    ctx.check_cancel()
    name = p.get("name") or "unet"
    model_id = new_id("md")
    version = app.store.next_model_version(name)
    meta = ModelMeta(
        model_id=model_id, name=name, version=version, created=now(), in_channels=int(pairs[0].image.shape[-1]),
        normalization=normalization.to_json(), receptive_field=int(receptive_field_radius(model)),
        train_tile_size=config.tile_size, metrics={k: float(v) for k, v in metrics.items()},
        label_ids=list(p["label_ids"]), parent_model_id=p.get("base_model_id") or "",
        fosgate_version=__version__, filters=[16, 32, 64, 128, 256],
    )
    directory = app.store.model_dir(model_id)
    save_model(model, meta, directory)
    curve = plot_training_curve(history, ctx.workdir / "training_curve.png")
    ctx.add_artifact(curve)
    app.store.add_model(ModelRow(model_id, name, version, str(directory), meta.to_dict(), meta.created, ctx.job_id))
    ctx.progress(1.0, f"Saved model {model_id} ({name} v{version}).", force=True, **metrics)
    return model_id


def run_prediction(app: App, ctx: JobContext) -> str:
    from fosgate.core.modelio import load_model
    from fosgate.core.normalize import Normalization
    from fosgate.core.pipeline import predict_slide

    p = ctx.params
    slide_row = app.store.get_slide(p["slide_id"])
    model_row = app.store.get_model(p["model_id"])
    ctx.progress(0.0, "Loading the model.", force=True)
    model, meta = load_model(model_row.path)
    stem = p.get("stem") or _stem(slide_row.name)
    region = tuple(p["region"]) if p.get("region") and p["region"][2] and p["region"][3] else None
    with app.open_slide(slide_row) as slide:
        out = predict_slide(
            slide, model, in_channels=meta.in_channels, normalization=Normalization.from_json(meta.normalization),
            receptive_field=meta.receptive_field, out_dir=ctx.workdir, stem=stem, tile=int(p.get("tile_size") or 0),
            halo=int(p.get("halo") or 0), threshold=float(p.get("threshold") or meta.threshold),
            min_size=int(p["min_size"]) if p.get("min_size") is not None else 10,
            split_touching=bool(p.get("split_touching")), region=region,
            memory_budget=app.config.predict_memory_bytes,
            progress=lambda f, m: ctx.progress(f, m), should_cancel=ctx.cancelled,
        )
    if out.halo < meta.receptive_field:
        ctx.progress(0.99, f"Warning: the {out.halo}-px halo is smaller than the model's receptive field "
                     f"({meta.receptive_field} px); tile seams may differ from a single pass.", force=True)
    for path in out.paths.values():
        ctx.add_artifact(path)
    ctx.progress(1.0, f"Found {out.count} cells in {out.seconds:.1f} s.", force=True, count=out.count,
                 seconds=out.seconds, tile=out.tile, halo=out.halo,
                 megapixels_per_second=out.width * out.height / 1e6 / max(out.seconds, 1e-9))
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


def _stem(name: str) -> str:
    low = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".png", ".jpeg", ".jpg"):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name
