"""``fosgate demo``: the whole path on a generated slide, through a real local gRPC server.

1. generate a synthetic c-fos-like slide (the reference paper's five tile types) as an OME-TIFF;
2. start a fosgate server on 127.0.0.1 (embedded defaults: SQLite + a data folder, no other service);
3. upload the slide, label a spread of tiles with the classical labeller (adaptive threshold +
   watershed) and store them as labels;
4. train the default instance-aware U-Net (``unet2``) briefly, predict the whole slide (instances from
   the seeded watershed with the post-processing calibrated at training), download the six outputs;
5. print the count, the time taken, a comparison with the generator's ground truth, and the files.

Nothing is downloaded and nothing outside ``out`` is read or written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def pick_tiles(height: int, width: int, tile: int, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` tile origins (y, x) spread over the slide: one random tile in each cell of a coarse grid."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    cell_h, cell_w = height // side, width // side
    origins = []
    for gy in range(side):
        for gx in range(side):
            y = gy * cell_h + int(rng.integers(0, max(cell_h - tile, 0) + 1))
            x = gx * cell_w + int(rng.integers(0, max(cell_w - tile, 0) + 1))
            origins.append((min(y, height - tile), min(x, width - tile)))
    rng.shuffle(origins)
    return origins[:n]


def run_demo(out: Path, size: int = 4096, epochs: int = 4, seed: int = 0, n_tiles: int = 64,
             label_tile: int = 256) -> int:
    import tifffile
    from tqdm import tqdm

    from fosgate.config import ServerConfig
    from fosgate.core.classical import classical_labels
    from fosgate.core.metrics import object_scores
    from fosgate.core.model import PostProcess
    from fosgate.core.synthetic import write_cfos_slide
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"fosgate demo: generating a {size}x{size} px synthetic c-fos slide ...", file=sys.stderr)
    slide_path, truth = write_cfos_slide(out / "sample_slide.ome.tif", height=size, width=size, seed=seed)
    server = start_server(ServerConfig(data_dir=out / "server-data", port=0))
    try:
        with FosgateClient(f"127.0.0.1:{server.port}", timeout=120) as fg:
            slide = fg.upload_slide(slide_path)
            image = tifffile.memmap(slide_path) if _is_memmappable(slide_path) else tifffile.imread(slide_path)
            label_dir = out / "labels"
            label_dir.mkdir(exist_ok=True)
            label_ids = []
            origins = pick_tiles(size, size, label_tile, n_tiles, seed)
            for y, x in tqdm(origins, desc="Labelling tiles (classical)", unit="tile", file=sys.stderr):
                crop = np.asarray(image[y:y + label_tile, x:x + label_tile])
                labels = classical_labels(crop)
                mask_path = label_dir / f"tile_y{y:05d}_x{x:05d}.labels.tif"
                tifffile.imwrite(mask_path, labels.astype(np.uint16))
                mask = fg.upload_slide(mask_path, role="mask")
                label_ids.append(fg.add_label(slide.slide_id, mask.slide_id, (x, y, label_tile, label_tile),
                                              source="classical", reviewer="fosgate demo").label_id)
            from fosgate_client.cli import _job_bar

            # the default instance-aware net, briefly: 128-px crops (the cells are 12-22 px wide) keep it to
            # a few minutes on 2 CPU cores
            job = _job_bar(fg, fg.train(label_ids, epochs=epochs, tile_size=128, batch_size=8, steps_per_epoch=25,
                                        seed=seed, name="demo"), "Training U-Net")
            model_id = job.result_id
            model = fg.get_model(model_id)
            job = _job_bar(fg, fg.predict(slide.slide_id, model_id, stem="sample_slide"),
                           "Predicting slide")
            files = fg.download_outputs(job, out)
        count = int(job.metrics.get("count", 0))
        pred = tifffile.imread(out / "sample_slide.labels.ome.tif")
        scores = object_scores(pred, truth, iou_threshold=0.5, centroid_px=None)
    finally:
        server.stop()
    elapsed = time.perf_counter() - t0
    post = PostProcess.from_dict(dict(model.postprocess))
    print(f"model {model_id} ({model.arch}): validation object F1 {model.metrics.get('val_object_f1', float('nan')):.3f}, "
          f"calibrated {post.describe(model.arch)}")
    print(f"model {model_id}: validation pixel F1 {model.metrics.get('pixel_f1', float('nan')):.3f}, "
          f"MIoU {model.metrics.get('pixel_miou', float('nan')):.3f}")
    print(f"objects vs the generator's ground truth ({len(np.unique(truth)) - 1} cells): "
          f"F1 {scores['f1']:.3f}, precision {scores['precision']:.3f}, recall {scores['recall']:.3f}")
    print("outputs:")
    for f in sorted(files):
        print(f"  {f}")
    print(f"counted {count} c-fos positive cells on the {size}x{size} px slide in {elapsed:.0f} s")
    return 0


def _is_memmappable(path: Path) -> bool:
    import tifffile

    try:
        tifffile.memmap(path)
        return True
    except Exception:  # noqa: BLE001 - compressed or tiled: fall back to reading
        return False
