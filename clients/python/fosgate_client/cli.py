"""The ``fosgate`` command line.

It belongs to the light client distribution (``fosgate-client``): every command that talks to a server
(``train``, ``pretrain``, ``predict``, ``cluster``, ``select``, ``autolabel``, ``review``, ``label``, ``models``, ``jobs``,
``tiles``) needs only the client. ``serve``, ``demo``, ``evaluate`` and other server-side commands run the
server distribution's code (``fosgate``) when it is installed, and otherwise say which package to install.

Commands and flags named in the project issues are a contract (Fiji macros and checks call them):
``serve``, ``train``, ``predict``, ``demo``, ``cluster``, ``select``, ``autolabel``, ``review``,
``evaluate``. Progress bars go to stderr; results go to stdout, and
``train`` and ``pretrain`` print the new model id as their last stdout line.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
from pathlib import Path

from fosgate_client.names import IMAGE_SUFFIXES, image_suffix, safe_name, stem_of

MASK_TAGS = ("", "_mask", ".mask", "-mask", "_masks", "_label", "_labels", ".labels", "_seg")


def file_stem(path: Path) -> str:
    return stem_of(path.name) if image_suffix(path.name) else path.stem


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def match_pairs(images_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each image with the mask whose file stem equals the image's (optionally followed by
    _mask, .mask, _labels, ...). Raises SystemExit with a clear message when nothing matches."""
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise SystemExit(f"fosgate: '{d}' is not a folder.")
    masks = {file_stem(m): m for m in image_files(masks_dir)}
    pairs, missing = [], []
    for img in image_files(images_dir):
        stem = file_stem(img)
        mask = next((masks[stem + tag] for tag in MASK_TAGS if stem + tag in masks), None)
        (pairs.append((img, mask)) if mask else missing.append(img.name))
    if not pairs:
        raise SystemExit(f"fosgate: no image in '{images_dir}' has a mask with the same file name in '{masks_dir}'.")
    if missing:
        print(f"fosgate: {len(missing)} image(s) have no mask and are skipped: {', '.join(missing[:5])}"
              + (" ..." if len(missing) > 5 else ""), file=sys.stderr)
    return pairs


def _read_token(path: str | None) -> str | None:
    """A token from a file (first line), else $FOSGATE_TOKEN, else None."""
    import os

    if path:
        try:
            return Path(path).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise SystemExit(f"fosgate: cannot read a token from '{path}'.") from None
    return os.environ.get("FOSGATE_TOKEN") or None


def _client(args):
    from fosgate_client.client import FosgateClient

    return FosgateClient(args.server, timeout=args.timeout, token=_read_token(getattr(args, "token_file", None)),
                         tls_ca=getattr(args, "tls_ca", None) or None, tls=getattr(args, "tls", False))


def _job_bar(client, job, desc: str):
    """Follow a job with a progress bar on stderr (elapsed time and ETA from the job's progress since it
    started); return the final job (raise on failure)."""
    from tqdm import tqdm

    with tqdm(total=1000, desc=desc, file=sys.stderr, leave=True, smoothing=0, mininterval=0.5,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}") as bar:
        def on_event(j):
            bar.set_postfix_str(j.message[:80], refresh=False)
            n = min(1000, round(j.progress * 1000))
            if n > bar.n:
                bar.update(n - bar.n)
            bar.refresh()

        return client.wait(job.job_id, on_event=on_event)


# ---------------------------------------------------------------------- commands
def cmd_serve(args) -> int:
    from fosgate.config import GiB, ServerConfig
    from fosgate.rpc.server import serve_forever

    config = ServerConfig(data_dir=Path(args.data), host=args.host, port=args.port, roots=args.root or [],
                          auth_token=_read_token(args.token_file), tls_cert=args.tls_cert, tls_key=args.tls_key,
                          max_upload_bytes=int(args.max_upload_gb * GiB), job_workers=args.workers,
                          max_data_bytes=int(args.max_data_gb * 1e9), insecure_token=args.insecure_token,
                          max_queued_jobs=args.max_queued_jobs,
                          sam_checkpoint=args.sam_checkpoint, sam_model_type=args.sam_model,
                          predict_memory_bytes=int(args.predict_memory_gb * GiB),
                          dask_scheduler=args.dask_scheduler, dask_workers=args.dask_workers,
                          dask_processes=args.dask_processes)
    try:
        config.check_security()
    except ValueError as err:
        raise SystemExit(f"fosgate serve: {err}") from None
    from fosgate.logs import log_file

    if log_file():
        print(f"fosgate: the server log (library messages too) is {log_file()}", file=sys.stderr)
    serve_forever(config)
    return 0


def cmd_train(args) -> int:
    from tqdm import tqdm

    if len(args.images) != len(args.masks):
        raise SystemExit("fosgate train: give one --masks folder for each --images folder.")
    if not args.images and not args.all_labels:
        raise SystemExit("fosgate train: give --images DIR --masks DIR, or --all-labels to retrain on the server's labels.")
    pairs = [p for i, m in zip(args.images, args.masks, strict=True) for p in match_pairs(Path(i), Path(m))]
    with _client(args) as fg:
        fg.check()
        label_ids = []
        for img, mask in tqdm(pairs, desc="Uploading image/mask pairs", unit="pair", file=sys.stderr):
            s = fg.upload_slide(img, channel=args.channel)
            m = fg.upload_slide(mask, role="mask")
            label_ids.append(fg.add_label(s.slide_id, m.slide_id, source="import",
                                          reviewer=args.reviewer).label_id)
        if args.all_labels:
            label_ids = sorted({lb.label_id for lb in fg.list_labels()} | set(label_ids))
        job = fg.train(label_ids, epochs=args.epochs, tile_size=args.tile_size, batch_size=args.batch_size,
                       val_fraction=args.val_fraction, seed=args.seed, name=args.name,
                       base_model_id=args.base_model or "", patience=args.patience, arch=args.arch,
                       steps_per_epoch=args.steps_per_epoch,
                       pixel_size_um=args.pixel_size, members=args.members)
        job = _job_bar(fg, job, "Training")
        model = fg.get_model(job.result_id)
        metrics = dict(model.metrics)
        if args.json:
            print(json.dumps({"model_id": model.model_id, "name": model.name, "version": model.version,
                              "metrics": metrics, "job_id": job.job_id}))
        else:
            print("model:", model.name, f"v{model.version}", " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        print(model.model_id)
    return 0


def _upload_or_id(fg, value: str, channel: int | None = None) -> str:
    """A slide id as given, or the id of the image file at that path after uploading it (with a progress bar)."""
    from tqdm import tqdm

    path = Path(value)
    if not path.is_file():
        return value
    with tqdm(total=path.stat().st_size, desc=f"Uploading {path.name}", unit="B", unit_scale=True,
              file=sys.stderr) as bar:
        return fg.upload_slide(path, channel=channel, on_progress=lambda s, t: bar.update(s - bar.n)).slide_id


def cmd_pretrain(args) -> int:
    """Self-supervised pretraining on unlabelled slides; the last stdout line is the new model id (as train)."""
    with _client(args) as fg:
        fg.check()
        slide_ids: list[str] = []
        for value in args.slide:
            sid = _upload_or_id(fg, value, args.channel)
            if sid not in slide_ids:  # the same file given twice is one slide
                slide_ids.append(sid)
        job = fg.pretrain(slide_ids, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                          batch_size=args.batch_size, tile_size=args.tile_size, patch_size=args.patch_size,
                          tiles=args.tiles, masking=args.masking, mask_ratio=args.mask_ratio,
                          learning_rate=args.learning_rate, arch=args.arch, name=args.name, seed=args.seed,
                          pixel_size_um=args.pixel_size)
        job = _job_bar(fg, job, "Pretraining (no labels)")
        model = fg.get_model(job.result_id)
        metrics = dict(model.metrics)
        if args.json:
            print(json.dumps({"model_id": model.model_id, "name": model.name, "version": model.version,
                              "metrics": metrics, "job_id": job.job_id, "slide_ids": slide_ids}))
        else:
            print("pretrained model (no labels):", model.name, f"v{model.version}", model.arch,
                  " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        print(f"fosgate: model {model.model_id} cannot segment yet; fine-tune it on labelled images: fosgate train "
              f"--base-model {model.model_id} --images DIR --masks DIR", file=sys.stderr)
        print(model.model_id)
    return 0


def cmd_predict(args) -> int:
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with _client(args) as fg:
        fg.check()
        fg.get_model(args.model)
        regions = _regions_arg(fg, args)
        for image in args.images:
            path = Path(image)
            size = path.stat().st_size if path.is_file() else 0
            with tqdm(total=size, desc=f"Uploading {path.name}", unit="B", unit_scale=True, file=sys.stderr) as bar:
                slide = fg.upload_slide(path, channel=args.channel, on_progress=lambda s, t: bar.update(s - bar.n))
            job = fg.predict(slide.slide_id, args.model, tile_size=args.tile_size, halo=args.halo,
                             threshold=args.threshold, min_size=args.min_size, split_touching=args.split_touching,
                             stem=safe_name(file_stem(path), default="slide"), tta=args.tta,
                             pixel_size_um=args.pixel_size, seed_threshold=args.seed_threshold,
                             min_area_um2=args.min_area, regions=regions)
            job = _job_bar(fg, job, f"Predicting {path.name}")
            files = fg.download_outputs(job, out)
            if args.imagej:
                files += imagej_copies(out, safe_name(file_stem(path), default="slide"))
            count = int(job.metrics.get("count", 0))
            results.append({"image": str(path), "count": count, "job_id": job.job_id,
                            "files": [str(f) for f in files]})
            if not args.json:
                print(f"{path.name}: {count} cells")
                for f in files:
                    print(f"  {f}")
    if args.json:
        print(json.dumps(results))
    return 0


def _regions_arg(fg, args):
    """The RegionMap of --regions/--region-names/--region-scale/--pixel-size, or None."""
    if not getattr(args, "regions", None):
        if getattr(args, "region_names", None):
            raise SystemExit("fosgate: --region-names goes with --regions (a label image).")
        return None
    return fg.region_map(args.regions, args.region_names, scale=args.region_scale, pixel_size_um=args.pixel_size)


def cmd_count_regions(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _client(args) as fg:
        fg.check()
        job = _job_bar(fg, fg.count_regions(args.job, _regions_arg(fg, args)), "Counting cells per region")
        files = fg.download_outputs(job, out)
    table = next((f for f in files if f.name.endswith(".regions.csv")), None)
    if args.json:
        print(json.dumps({"job_id": job.job_id, "prediction_job_id": args.job, "regions_csv": str(table),
                          "regions": int(job.metrics.get("regions", 0)),
                          "cells_in_regions": int(job.metrics.get("cells_in_regions", 0)),
                          "cells_outside_regions": int(job.metrics.get("cells_outside_regions", 0))}))
    else:
        print(f"{int(job.metrics.get('cells_in_regions', 0))} cells in {int(job.metrics.get('regions', 0))} "
              f"region(s), {int(job.metrics.get('cells_outside_regions', 0))} outside")
        print(table)
    return 0


def region_args(sp, required: bool = False, pixel_size: bool = True) -> None:
    """--regions and friends; ``pixel_size`` False where the command has its own --pixel-size (predict: the
    slide's µm per pixel, which is also what areas and densities use)."""
    sp.add_argument("--regions", required=required, default=None, metavar="FILE",
                    help="brain regions: QuPath GeoJSON, an ImageJ ROI set (.zip) or a label image (.tif/.png, e.g. "
                         "an atlas annotation from ABBA / QuickNII / VisuAlign) -> <stem>.regions.csv")
    sp.add_argument("--region-names", default=None, metavar="FILE",
                    help="names table for a label image: CSV id,name[,parent_id][,acronym][,color] or Allen ontology JSON")
    sp.add_argument("--region-scale", type=float, default=0.0,
                    help="slide pixels per label-image pixel (0: inferred from the sizes)")
    if pixel_size:
        sp.add_argument("--pixel-size", type=float, default=0.0,
                        help="pixel size in µm for mm² and densities (0: the slide's own)")


def cmd_demo(args) -> int:
    from fosgate.demo import run_demo

    return run_demo(Path(args.out), size=args.size, epochs=args.epochs, seed=args.seed)


def cmd_models(args) -> int:
    with _client(args) as fg:
        models = fg.list_models()
    for m in models:
        px = f"{m.pixel_size_um:g} um/px" if m.pixel_size_um else "pixel size unknown"
        arch = m.arch or "reference"
        if m.metrics.get("members", 1) > 1:
            arch += f" x {m.metrics['members']:.0f} (ensemble)"
        head = f"{m.model_id}\t{m.name} v{m.version}\t{arch}\t{px}\t{m.created}"
        if m.metrics.get("pretrained") and not m.label_ids:  # no segmentation head trained yet
            loss = f"mim_val_loss={m.metrics['mim_val_loss']:.4g}" if "mim_val_loss" in m.metrics else ""
            print(f"{head}\tpretrained (no labels): fine-tune with --base-model {m.model_id}\t{loss}")
            continue
        post = " ".join(f"{k}={v:.4g}" for k, v in sorted(m.postprocess.items()))
        shown = ("val_object_f1", "val_object_precision", "val_object_recall", "train_object_f1", "best_epoch",
                 "epochs_run", "pixel_f1")
        metrics = " ".join(f"{k}={m.metrics[k]:.4g}" for k in shown if k in m.metrics)
        if m.metrics.get("calibrated_in_sample"):
            metrics += " (no validation image: post-processing calibrated on the training images)"
        base = f"\tfrom {m.parent_model_id}" if m.parent_model_id else ""
        print(f"{head}\tpost: {post}\t{metrics}{base}")
    return 0


def cmd_export_model(args) -> int:
    """Package a model on the server and download the zip into --out (see docs/model-export.md)."""
    with _client(args) as fg:
        job = _job_bar(fg, fg.export_model(args.model_id, args.format, args.author), f"Exporting ({args.format})")
        files = fg.download_outputs(job, Path(args.out))
    if args.validate and args.format == "bioimageio":
        try:
            from fosgate.core.export_model import validate_bioimageio
        except ImportError:
            raise SystemExit("fosgate: --validate needs the fosgate server package with the 'export' extra "
                             "(pip install 'fosgate[export]').") from None
        for f in files:
            report = validate_bioimageio(f)
            print(f"fosgate: bioimageio.core test_model: {report['status']}", file=sys.stderr)
            if report["status"] != "passed":
                for name, status, errors in report["details"]:
                    if status == "failed":
                        print(f"  {name}: {'; '.join(errors)[:300]}", file=sys.stderr)
                return 1
    for f in files:
        print(json.dumps({"path": str(f), "format": args.format}) if args.json else f)
    return 0


def cmd_jobs(args) -> int:
    from fosgate_client.client import STATE_NAMES

    with _client(args) as fg:
        if args.cancel:
            job = fg.cancel(args.cancel)
            print(f"{job.job_id}\t{STATE_NAMES[job.state]}\t{job.message}")
            return 0
        if args.delete:
            fg.delete_job(args.delete)
            print(f"{args.delete}\tdeleted")
            return 0
        for j in fg.list_jobs():
            print(f"{j.job_id}\t{j.kind}\t{STATE_NAMES[j.state]}\t{j.progress:.0%}\t{j.message}")
    return 0


def cmd_tiles(args) -> int:
    with _client(args) as fg:
        slide = fg.upload_slide(Path(args.image), channel=args.channel)
        job = _job_bar(fg, fg.export_tiles(slide.slide_id, args.tile_size, args.margin, args.format), "Tiling")
        files = fg.download_outputs(job, Path(args.out))
    for f in files:
        print(f)
    return 0


def _slide_id(fg, value: str, channel: int | None = None) -> str:
    """A slide id as given, or the id of the image file at that path after uploading it."""
    path = Path(value)
    if path.is_file():
        return fg.upload_slide(path, channel=channel).slide_id
    return value


def _region_arg(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,WIDTH,HEIGHT, got '{text}'") from None
    return x, y, w, h


def _unzip_artifacts(fg, job, out: Path) -> list[Path]:
    import zipfile

    files = fg.download_outputs(job, out)
    result = []
    for f in files:
        if f.suffix == ".zip" and f.name in ("proposals.zip", "dataset.zip"):
            with zipfile.ZipFile(f) as zf:
                zf.extractall(out)
                result += [out / n for n in zf.namelist() if not n.endswith("/")]
            f.unlink()
        else:
            result.append(f)
    return result


def cmd_cluster(args) -> int:
    with _client(args) as fg:
        slide_id = _slide_id(fg, args.slide, args.channel)
        job = _job_bar(fg, fg.cluster_tiles(slide_id, k=args.k, tile_size=args.tile_size, margin=args.margin,
                                            seed=args.seed, epochs=args.epochs, max_tiles=args.max_tiles),
                       "Clustering tiles")
        cl = fg.get_clustering(job.result_id)
        if args.out:
            for f in fg.download_outputs(job, Path(args.out)):
                print(f, file=sys.stderr)
        if args.json:
            print(json.dumps({"clustering_id": cl.clustering_id, "slide_id": slide_id,
                              "cluster_sizes": list(cl.cluster_sizes)}))
        else:
            print(f"slide {slide_id}: {sum(cl.cluster_sizes)} tiles in clusters of sizes {list(cl.cluster_sizes)}")
        print(cl.clustering_id)
    return 0


def cmd_select(args) -> int:
    with _client(args) as fg:
        tiles = fg.select_tiles(args.clustering, args.n, args.strategy, exclude=args.exclude or [],
                                model_id=args.model, seed=args.seed, skip_labelled=args.skip_labelled)
    if args.json:
        print(json.dumps([{"x": t.region.x, "y": t.region.y, "width": t.region.width, "height": t.region.height,
                           "cluster": t.cluster} for t in tiles]))
    else:
        for t in tiles:
            print(f"{t.region.x},{t.region.y},{t.region.width},{t.region.height}\tcluster {t.cluster}")
    return 0


def cmd_autolabel(args) -> int:
    with _client(args) as fg:
        slide_id = _slide_id(fg, args.slide, args.channel)
        regions = list(args.tile or [])
        if args.clustering:
            picked = fg.select_tiles(args.clustering, args.n, args.strategy, exclude=args.exclude or [],
                                     model_id=args.model if args.strategy == "active" else "", seed=args.seed,
                                     skip_labelled=True)
            regions += [(t.region.x, t.region.y, t.region.width, t.region.height) for t in picked]
        if not regions:
            raise SystemExit("fosgate autolabel: give --tile X,Y,W,H (repeatable) or --clustering ID --n N.")
        sam = None
        if args.method == "sam":
            sam = {"points_per_side": args.sam_points, "min_area": args.min_area, "max_area": args.max_area}
            if args.pred_iou is not None or args.stability is not None:
                # has_thresholds makes the server use both values even when 0, so the one not given is sent
                # as the server's documented default (SamParams in the proto)
                sam.update(pred_iou_thresh=args.pred_iou if args.pred_iou is not None else 0.8,
                           stability_score_thresh=args.stability if args.stability is not None else 0.85,
                           has_thresholds=True)
        job = _job_bar(fg, fg.autolabel(slide_id, regions, args.method, model_id=args.model or "", sam=sam,
                                        clustering_id=args.clustering or ""), f"Auto-labelling ({args.method})")
        props = fg.list_proposals(job_id=job.job_id)
        if args.out:
            exp = _job_bar(fg, fg.export_proposals(job_id=job.job_id), "Packing proposals for review")
            for f in _unzip_artifacts(fg, exp, Path(args.out)):
                print(f, file=sys.stderr)
    if args.json:
        print(json.dumps([{"proposal_id": p.proposal_id, "x": p.region.x, "y": p.region.y, "width": p.region.width,
                           "height": p.region.height, "objects": p.objects} for p in props]))
    else:
        for p in props:
            print(f"{p.proposal_id}\t{p.region.x},{p.region.y},{p.region.width},{p.region.height}\t{p.objects} objects")
    return 0


def cmd_review(args) -> int:
    from fosgate_client.v1 import fosgate_pb2 as pb

    state_names = {v: k.removeprefix("PROPOSAL_STATE_").lower() for k, v in pb.ProposalState.items()}
    with _client(args) as fg:
        if args.action == "list":
            for p in fg.list_proposals(slide_id=args.slide, state=args.state):
                print(f"{p.proposal_id}\t{state_names[p.state]}\t{p.region.x},{p.region.y},{p.region.width},"
                      f"{p.region.height}\t{p.objects} objects\t{p.label_id}")
            return 0
        if args.action == "fetch":
            if not args.out:
                raise SystemExit("fosgate review fetch: give --out DIR.")
            job = _job_bar(fg, fg.export_proposals(slide_id=args.slide, state=args.state or "pending"),
                           "Packing proposals for review")
            for f in _unzip_artifacts(fg, job, Path(args.out)):
                print(f)
            return 0
        if args.action == "next":
            return _review_next(fg, args, state_names)
        if args.action == "export":
            if not args.out:
                raise SystemExit("fosgate review export: give --out DIR.")
            job = _job_bar(fg, fg.export_dataset(fmt=args.format), "Exporting the labelled dataset")
            for f in _unzip_artifacts(fg, job, Path(args.out)):
                print(f)
            return 0
        if not args.proposals:
            raise SystemExit(f"fosgate review {args.action}: give one or more "
                             f"{'label' if args.action == 'delete-label' else 'proposal'} ids.")
        if args.action in ("delete", "delete-label"):
            for item in args.proposals:
                (fg.delete_proposal if args.action == "delete" else fg.delete_label)(item)
                print(f"{item}\tdeleted")
            return 0
        for pid in args.proposals:
            if args.action == "replace":
                if len(args.proposals) != 1:
                    raise SystemExit("fosgate review replace: one proposal at a time.")
                r = fg.review(pid, "replace", reviewer=args.reviewer, mask=args.mask, roi_zip=args.roi_zip,
                              geojson=args.geojson, coordinates=args.coordinates or "", replaces=args.replaces)
            else:
                r = fg.review(pid, args.action, reviewer=args.reviewer)
            label_id = r.label.label_id if r.HasField("label") else ""
            if args.json:
                print(json.dumps({"proposal_id": pid, "state": state_names[r.proposal.state], "label_id": label_id,
                                  "objects": r.label.objects if label_id else 0, "reviewer": r.proposal.reviewer}))
            else:
                print(f"{pid}\t{state_names[r.proposal.state]}\t{label_id}")
    return 0


def _review_next(fg, args, state_names: dict) -> int:
    """``fosgate review next``: download the next pending proposal's tile and cells into --out and print
    ``key=value`` lines (``proposal=``, ``image=``, ``rois=``, ``geojson=``, ``remaining=``, ...), or
    ``proposal=`` empty and ``remaining=N`` when none is left; errors as one ``error=`` line (exit 2)."""
    from fosgate_client.client import FosgateClientError

    if not (args.slide or args.job or args.proposals):
        raise SystemExit("fosgate review next: give --slide ID or --job ID (or a proposal id).")
    if not args.out:
        raise SystemExit("fosgate review next: give --out DIR.")
    skip = [p for value in args.skip or [] for p in value.split(",") if p.strip()]
    try:
        tile = fg.proposal_tile(args.proposals[0] if args.proposals else "", slide_id=args.slide, job_id=args.job,
                                skip=skip)
    except FosgateClientError as err:
        if args.json:
            raise
        print(f"error={err}")
        return 2
    info: dict = {"proposal": "", "remaining": tile.pending, "skipped": len(skip)}
    if tile.HasField("proposal"):
        p = tile.proposal
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        image = out / f"{p.proposal_id}.tif"
        image.write_bytes(tile.image_tiff)
        geojson = out / f"{p.proposal_id}.geojson"
        geojson.write_bytes(tile.geojson)
        rois = out / f"{p.proposal_id}.rois.zip"
        rois.unlink(missing_ok=True)
        if tile.roi_zip:
            rois.write_bytes(tile.roi_zip)
        info.update(proposal=p.proposal_id, slide=p.slide_id, slide_name=tile.slide_name,
                    state=state_names[p.state], region=f"{p.region.x},{p.region.y},{p.region.width},{p.region.height}",
                    objects=p.objects, uncertainty=round(p.uncertainty, 4), job=p.job_id, image=str(image),
                    rois=str(rois) if tile.roi_zip else "", geojson=str(geojson))
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}={value}")
    return 0


def imagej_copies(out: Path, stem: str) -> list[Path]:
    """ImageJ 1.x cannot open tiled TIFFs: write striped, zlib-compressed ImageJ TIFFs of the mask and labels."""
    import numpy as np
    import tifffile

    written = []
    for kind in ("mask", "labels"):
        src = out / f"{stem}.{kind}.ome.tif"
        if src.exists():
            arr = tifffile.imread(src)
            if arr.dtype == np.uint32:
                arr = arr.astype(np.float32)  # ImageJ has no 32-bit integer images
            dst = out / f"{stem}.{kind}.tif"
            tifffile.imwrite(dst, arr, imagej=True, compression="zlib", rowsperstrip=64)
            written.append(dst)
    return written


def cmd_label(args) -> int:
    with _client(args) as fg:
        slide_id = _slide_id(fg, args.image, args.channel)
        mask_id = fg.upload_slide(Path(args.mask), role="mask").slide_id if args.mask else ""
        label = fg.add_label(slide_id, mask_id, args.region, source="human", reviewer=args.reviewer,
                             roi_zip=args.roi_zip, geojson=args.geojson)
    if args.json:
        print(json.dumps({"label_id": label.label_id, "slide_id": slide_id, "objects": label.objects}))
    else:
        print(f"{label.label_id}\t{label.objects} objects on slide {slide_id}")
    return 0


def cmd_evaluate(args) -> int:
    from fosgate.core.evaluate import evaluate_folders, format_table

    result = evaluate_folders(Path(args.pred), Path(args.truth), iou_threshold=args.iou,
                              centroid_px=None if args.centroid <= 0 else args.centroid)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fosgate", description="Segment and count c-fos positive cells in whole slides.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True)

    def client_args(sp):
        sp.add_argument("--server", default="127.0.0.1:50051", help="server address HOST:PORT")
        sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a single call")
        sp.add_argument("--json", action="store_true", help="print machine-readable JSON")
        sp.add_argument("--token-file", default=None, help="file holding the server's token (or set FOSGATE_TOKEN)")
        sp.add_argument("--tls", action="store_true", help="connect with TLS (system trust store)")
        sp.add_argument("--tls-ca", default=None, help="connect with TLS, trusting this CA / self-signed cert (PEM)")

    sp = sub.add_parser("serve", help="run the gRPC server")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=50051)
    sp.add_argument("--data", default="fosgate-data", help="data folder (SQLite + files)")
    sp.add_argument("--root", action="append", type=Path, help="folder whose files may be registered by path")
    sp.add_argument("--max-upload-gb", type=float, default=64.0)
    sp.add_argument("--max-data-gb", type=float, default=0.0,
                    help="quota for everything in the data folder, in GB (0: no quota)")
    sp.add_argument("--insecure-token", action="store_true",
                    help="allow --token-file off loopback without TLS (the token crosses the network in clear text)")
    sp.add_argument("--token-file", default=None,
                    help="require this token from clients (first line of FILE; or set FOSGATE_TOKEN); needed when "
                         "--host is not 127.0.0.1")
    sp.add_argument("--tls-cert", type=Path, default=None, help="TLS certificate chain (PEM)")
    sp.add_argument("--tls-key", type=Path, default=None, help="TLS private key (PEM)")
    sp.add_argument("--dask-scheduler", default="",
                    help="Dask scheduler address (tcp://HOST:8786) to fan prediction out to; default: an in-process "
                         "LocalCluster; 'off': no Dask")
    sp.add_argument("--dask-workers", type=int, default=1, help="workers of the local Dask cluster")
    sp.add_argument("--dask-processes", action="store_true", help="local Dask workers as processes, not threads")
    sp.add_argument("--predict-memory-gb", type=float, default=1.5,
                    help="memory for one prediction window (bigger: larger tiles, less halo overhead)")
    sp.add_argument("--workers", type=int, default=1, help="jobs that may run at once")
    sp.add_argument("--max-queued-jobs", type=int, default=64,
                    help="jobs that may be queued or running at once; more are refused (RESOURCE_EXHAUSTED)")
    sp.add_argument("--sam-checkpoint", type=Path, default=None,
                    help="Segment Anything checkpoint file on this machine (never downloaded)")
    sp.add_argument("--sam-model", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "vit_tiny"],
                    help="architecture of the SAM checkpoint")
    sp.set_defaults(fn=cmd_serve)

    sp = sub.add_parser("train", help="train a U-Net from a folder of images and a folder of masks")
    client_args(sp)
    sp.add_argument("--images", action="append", default=[],
                    help="folder of images (repeat --images/--masks to combine several folders)")
    sp.add_argument("--masks", action="append", default=[],
                    help="folder of masks (same file stems; binary 0/255, 0/1 or instance labels)")
    sp.add_argument("--epochs", type=int, default=0, help="default: the server's (30)")
    sp.add_argument("--tile-size", type=int, default=0, help="training crop, multiple of 16; default: the server's (256)")
    sp.add_argument("--batch-size", type=int, default=0, help="default: the server's (8)")
    sp.add_argument("--arch", default="", choices=["", "unet2", "reference"],
                    help="unet2 (default: foreground + centre map, seeded watershed) or reference (the paper's U-Net)")
    sp.add_argument("--pixel-size", type=float, default=0.0, metavar="UM",
                    help="µm per pixel the model works at (default: the images' metadata)")
    sp.add_argument("--val-fraction", type=float, default=0.0, help="default: the server's (0.2)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--name", default="", help="model name (versions count up per name); default: unet")
    sp.add_argument("--channel", type=int, default=None, help="channel to use in multi-channel images")
    sp.add_argument("--base-model", default="", help="fine-tune this model id instead of starting from scratch")
    sp.add_argument("--reviewer", default="", help="who made the masks (stored with the labels)")
    sp.add_argument("--patience", type=int, default=0, help="stop after N epochs without improvement (0: never)")
    sp.add_argument("--steps-per-epoch", type=int, default=0,
                    help="training steps per epoch (default: about two passes over the labelled pixels, 25..400)")
    sp.add_argument("--members", type=int, default=0, metavar="K",
                    help="train a seed ensemble of K networks (2..8) whose maps are averaged, at K times the "
                    "training and prediction time (default: one network; BENCHMARKS.md, seed ensembles)")
    sp.add_argument("--all-labels", action="store_true",
                    help="train on every label stored on the server (reviewed proposals too) plus the folders")
    sp.set_defaults(fn=cmd_train)

    sp = sub.add_parser("pretrain", help="pretrain a base model on unlabelled slides (masked image modelling); "
                        "fine-tune it with train --base-model")
    client_args(sp)
    sp.add_argument("--slide", action="append", required=True, metavar="ID_OR_FILE",
                    help="image slide id, or an image file to upload (repeatable; no masks needed)")
    sp.add_argument("--epochs", type=int, default=0, help="default: the server's (20)")
    sp.add_argument("--steps-per-epoch", type=int, default=0, help="default: the server's (50)")
    sp.add_argument("--batch-size", type=int, default=0, help="default: the server's (8)")
    sp.add_argument("--tiles", type=int, default=0,
                    help="unlabelled tiles sampled from the slides and kept in memory (default: the server's, 512)")
    sp.add_argument("--tile-size", type=int, default=0, help="tile side, multiple of 16 (default: the server's, 128)")
    sp.add_argument("--patch-size", type=int, default=0,
                    help="side of the hidden squares, divides the tile (default: the server's, 16)")
    sp.add_argument("--masking", default="", choices=["", "intensity", "random"],
                    help="which squares to hide: intensity (bright ones more often; the default) or random")
    sp.add_argument("--mask-ratio", type=float, default=0.0,
                    help="fraction of each tile hidden (default: the server's, 0.5)")
    sp.add_argument("--learning-rate", type=float, default=0.0, help="default: the server's (1e-3)")
    sp.add_argument("--arch", default="", choices=["", "unet2", "reference"],
                    help="the network to pretrain; fine-tuning keeps it (default: unet2)")
    sp.add_argument("--name", default="", help="model name (versions count up per name); default: pretrained")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--pixel-size", type=float, default=0.0, metavar="UM",
                    help="µm per pixel the model works at (default: the slides' metadata)")
    sp.add_argument("--channel", type=int, default=None, help="channel to use in multi-channel images")
    sp.set_defaults(fn=cmd_pretrain)

    sp = sub.add_parser("predict", help="segment and count cells in whole images")
    client_args(sp)
    sp.add_argument("--model", required=True, help="model id (see 'fosgate models')")
    sp.add_argument("--tile-size", type=int, default=0, help="tile size in px (0: chosen from memory)")
    sp.add_argument("--halo", type=int, default=0, help="context per side in px (0: the model's receptive field)")
    sp.add_argument("--threshold", type=float, default=0.0,
                    help="probability threshold (0: the model's own, calibrated on validation tiles at training; "
                         "0.5 for models trained without a validation split)")
    sp.add_argument("--min-size", type=int, default=0,
                    help="smallest object in pixels (default: the model's own, calibrated at training)")
    sp.add_argument("--min-area", type=float, default=0.0, metavar="UM2",
                    help="smallest object in µm² (wins over --min-size)")
    sp.add_argument("--seed-threshold", type=float, default=0.0,
                    help="centre-map level of the watershed seeds (unet2; default: the model's own)")
    sp.add_argument("--split-touching", action="store_true",
                    help="force the distance-transform watershed split (unet2: instead of its centre seeds; "
                         "default: the model's own)")
    sp.add_argument("--tta", action="store_true",
                    help="test-time augmentation: mean over 8 flips/rotations (8x slower; stitching stays exact)")
    sp.add_argument("--pixel-size", type=float, default=0.0, metavar="UM",
                    help="the images' µm per pixel when their metadata lacks it (default: the metadata)")
    sp.add_argument("--channel", type=int, default=None)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--imagej", action="store_true",
                    help="also write <stem>.mask.tif and <stem>.labels.tif that plain ImageJ 1.x opens (striped)")
    region_args(sp, pixel_size=False)
    sp.add_argument("images", nargs="+", metavar="IMAGE")
    sp.set_defaults(fn=cmd_predict)

    sp = sub.add_parser("count-regions", help="count a finished prediction's cells per brain region")
    client_args(sp)
    sp.add_argument("--job", required=True, help="the prediction job id (fosgate predict --json shows it)")
    region_args(sp, required=True)
    sp.add_argument("--out", required=True, help="folder for <stem>.regions.csv")
    sp.set_defaults(fn=cmd_count_regions)

    sp = sub.add_parser("label", help="store a reviewed label: an image plus a mask, ROI set or GeoJSON")
    client_args(sp)
    sp.add_argument("--image", required=True, help="image file (uploaded) or slide id")
    sp.add_argument("--mask", default=None, help="mask image of the region's size (binary or instance labels)")
    sp.add_argument("--roi-zip", default=None, help="ImageJ ROI set (region coordinates), e.g. the ROI Manager's")
    sp.add_argument("--geojson", default=None, help="QuPath GeoJSON (slide coordinates)")
    sp.add_argument("--region", type=_region_arg, default=None, metavar="X,Y,W,H", help="default: the whole image")
    sp.add_argument("--reviewer", default="")
    sp.add_argument("--channel", type=int, default=None)
    sp.set_defaults(fn=cmd_label)

    sp = sub.add_parser("demo", help="generate a sample slide, label, train, predict; no server or data needed")
    sp.add_argument("--out", default="fosgate-demo")
    sp.add_argument("--size", type=int, default=4096, help="side of the synthetic slide in px")
    sp.add_argument("--epochs", type=int, default=4, help="training epochs of 25 steps (8 crops of 128 px)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("models", help="list models")
    client_args(sp)
    sp.set_defaults(fn=cmd_models)

    sp = sub.add_parser("export-model", help="package a model for bioimage.io (deepImageJ, QuPath), Keras or SavedModel")
    client_args(sp)
    sp.add_argument("model_id", metavar="MODEL_ID")
    sp.add_argument("--format", default="bioimageio", choices=["bioimageio", "keras", "savedmodel"])
    sp.add_argument("--author", action="append", default=[], help="bioimage.io author name (repeatable)")
    sp.add_argument("--out", default=".", help="folder for the zip file")
    sp.add_argument("--validate", action="store_true",
                    help="check the bioimage.io package with bioimageio.core (needs the 'export' extra)")
    sp.set_defaults(fn=cmd_export_model)

    sp = sub.add_parser("jobs", help="list jobs, cancel one, or delete a finished one")
    client_args(sp)
    sp.add_argument("--cancel", metavar="JOB_ID")
    sp.add_argument("--delete", metavar="JOB_ID", help="delete a finished job and its files")
    sp.set_defaults(fn=cmd_jobs)

    sp = sub.add_parser("tiles", help="cut an image into overlapping tiles (PNG/TIFF + tiles.csv)")
    client_args(sp)
    sp.add_argument("image")
    sp.add_argument("--tile-size", type=int, default=0, help="default: the server's (128)")
    sp.add_argument("--margin", type=int, default=None, help="default: the server's (4)")
    sp.add_argument("--format", default="", choices=["", "png", "tif"], help="default: png")
    sp.add_argument("--channel", type=int, default=None)
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_tiles)

    sp = sub.add_parser("cluster", help="cluster a slide's tiles (autoencoder + k-means, t-SNE, montages)")
    client_args(sp)
    sp.add_argument("--slide", required=True, help="slide id, or an image file to upload")
    sp.add_argument("--k", type=int, default=0, help="clusters (default: the server's, 5)")
    sp.add_argument("--tile-size", type=int, default=0, help="default: the server's (128)")
    sp.add_argument("--margin", type=int, default=None, help="default: the server's (4)")
    sp.add_argument("--epochs", type=int, default=0, help="autoencoder epochs (default: the server's, 10)")
    sp.add_argument("--max-tiles", type=int, default=0,
                    help="tiles used to train the autoencoder (default: the server's, 2000)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--channel", type=int, default=None)
    sp.add_argument("--out", default="", help="folder for clusters.csv and the pictures")
    sp.set_defaults(fn=cmd_cluster)

    strategies = ["balanced", "proportional", "random", "active"]
    sp = sub.add_parser("select", help="choose tiles to label from a clustering")
    client_args(sp)
    sp.add_argument("--clustering", required=True)
    sp.add_argument("--n", type=int, default=20)
    sp.add_argument("--strategy", default="balanced", choices=strategies)
    sp.add_argument("--exclude", type=int, action="append", help="cluster to leave out (repeatable)")
    sp.add_argument("--model", default="", help="model whose uncertainty guides --strategy active")
    sp.add_argument("--skip-labelled", action="store_true", help="leave out tiles at least half under a label or pending proposal")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_select)

    sp = sub.add_parser("autolabel", help="propose labels for tiles (classical, SAM or a model) for review")
    client_args(sp)
    sp.add_argument("--slide", required=True, help="slide id, or an image file to upload")
    sp.add_argument("--method", default="classical", choices=["classical", "sam", "model"])
    sp.add_argument("--model", default="", help="model id for --method model / --strategy active")
    sp.add_argument("--tile", type=_region_arg, action="append", metavar="X,Y,W,H", help="a tile (repeatable)")
    sp.add_argument("--clustering", default="", help="select tiles from this clustering")
    sp.add_argument("--n", type=int, default=20)
    sp.add_argument("--strategy", default="balanced", choices=strategies)
    sp.add_argument("--exclude", type=int, action="append")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--channel", type=int, default=None)
    sp.add_argument("--sam-points", type=int, default=0, help="SAM points per side (default: the server's, 16)")
    sp.add_argument("--pred-iou", type=float, default=None, help="SAM: keep masks with predicted IoU >= this")
    sp.add_argument("--stability", type=float, default=None, help="SAM: keep masks with stability score >= this")
    sp.add_argument("--min-area", type=int, default=0, help="SAM: smallest mask in px (default: the server's, 20)")
    sp.add_argument("--max-area", type=int, default=0, help="SAM: largest mask in px (default: the server's, 5000)")
    sp.add_argument("--out", default="", help="download the proposals (tile, labels, ROI set, GeoJSON) here")
    sp.set_defaults(fn=cmd_autolabel)

    sp = sub.add_parser("review", help="list, fetch, next, accept, reject, replace or delete proposals; delete "
                        "labels; export the dataset")
    client_args(sp)
    sp.add_argument("action", choices=["list", "fetch", "next", "accept", "reject", "replace", "export", "delete",
                                       "delete-label"])
    sp.add_argument("proposals", nargs="*", metavar="ID", help="proposal ids (label ids for delete-label)")
    sp.add_argument("--slide", default="")
    sp.add_argument("--job", default="", help="next: the proposals of this auto-labelling job")
    sp.add_argument("--skip", action="append", metavar="ID[,ID...]",
                    help="next: pass over these proposals (skipped in this session; repeatable)")
    sp.add_argument("--state", default="", choices=["", "pending", "accepted", "rejected", "replaced"])
    sp.add_argument("--reviewer", default="")
    sp.add_argument("--mask", default=None, help="replace: edited mask image (PNG/TIFF) of the tile's size")
    sp.add_argument("--roi-zip", default=None, help="replace: ImageJ ROI set (tile coordinates by default)")
    sp.add_argument("--geojson", default=None, help="replace: QuPath GeoJSON (slide coordinates by default)")
    sp.add_argument("--coordinates", default=None, choices=["tile", "slide"])
    sp.add_argument("--replaces", default="", metavar="LABEL_ID",
                    help="replace: a proposal that was already decided needs the label it replaces (a new version)")
    sp.add_argument("--format", default="", choices=["", "png", "tif"], help="export: image format (default png)")
    sp.add_argument("--out", default="")
    sp.set_defaults(fn=cmd_review)

    sp = sub.add_parser("evaluate", help="score predicted masks/labels against ground truth (no server needed)")
    sp.add_argument("--pred", required=True, help="folder of predictions (*.labels.ome.tif, masks, ...)")
    sp.add_argument("--truth", required=True, help="folder of ground-truth masks or labels (matched by stem)")
    sp.add_argument("--iou", type=float, default=0.5, help="IoU for an object match")
    sp.add_argument("--centroid", type=float, default=40.0,
                    help="also match objects whose centroids are this close in px (FNC rule; 0: IoU only)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "demo"):
        # A crash in native code (TensorFlow, grpc, a codec) prints every thread's Python stack on stderr
        # instead of a silent exit -11 that no one can act on.
        faulthandler.enable()
    try:
        from fosgate.logs import setup_logging
    except ModuleNotFoundError:  # the light client alone: only its own messages, WARNING and up (-v: INFO)
        import logging

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    else:
        server_log = {"serve": lambda: Path(args.data) / "server.log",
                      "demo": lambda: Path(args.out) / "server-data" / "server.log"}.get(args.command)
        setup_logging(args.verbose, server_log() if server_log else None)
    from fosgate_client.client import FosgateClientError

    try:
        return int(args.fn(args) or 0)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "fosgate":
            raise
        print(f"fosgate {args.command} needs the fosgate server distribution, which is not installed here "
              "(only the light client is): pip install fosgate, or run this command on the server machine.",
              file=sys.stderr)
        return 2
    except FosgateClientError as err:
        print(f"fosgate: {err}", file=sys.stderr)
        if getattr(args, "json", False):  # scripts and macros read stdout only
            print(json.dumps({"error": str(err), "code": err.code.name if err.code else ""}))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
