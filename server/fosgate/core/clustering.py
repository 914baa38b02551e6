"""Tile clustering (the reference paper's "classify" step): a convolutional autoencoder learns a
compact code of each grey tile, k-means groups the codes, t-SNE draws them.

Reference autoencoder (128 x 128 input): encoder of three 3x3 conv (ReLU) + 2x2 max-pool layers
(16, 8, 8 filters) giving a 16 x 16 x 8 code; decoder of three 3x3 conv (ReLU) + 2x up-sampling
layers back to 128 x 128 and a sigmoid output; trained on the tiles themselves with MSE.

Invariants
- Deterministic for a given seed (Keras and NumPy seeds, k-means and t-SNE ``random_state``).
- Features for k-means are the PCA-reduced codes plus the tile's mean and spread of intensity (scaled),
  so near-black tiles always fall together: they are what the reference balanced selection removes.
- Cluster numbers are ordered by mean tile brightness (cluster 0 = darkest), stable across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fosgate.core.normalize import Normalization
from fosgate.core.tiling import CropTile, plan_crop_tiles


@dataclass
class ClusterResult:
    tiles: list[CropTile]  # in slide pixels
    clusters: np.ndarray  # (N,) int
    tsne: np.ndarray  # (N, 2)
    mean_intensity: np.ndarray  # (N,) normalised 0..1
    k: int


def build_autoencoder(tile: int = 128, seed: int | None = 0):
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inp = keras.Input((tile, tile, 1))
    x = inp
    for n in (16, 8, 8):
        x = layers.Conv2D(n, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    code = x
    for n in (8, 8, 16):
        x = layers.Conv2D(n, 3, padding="same", activation="relu")(x)
        x = layers.UpSampling2D(2)(x)
    out = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    ae = keras.Model(inp, out, name="tile_autoencoder")
    encoder = keras.Model(inp, code, name="tile_encoder")
    ae.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return ae, encoder


def read_grey_tiles(slide, tiles: list[CropTile], lo: np.ndarray, hi: np.ndarray, tile: int,
                    origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(N, tile, tile, 1) float32 in [0, 1]: normalised, channels averaged, padded to full size."""
    ox, oy = origin
    out = np.zeros((len(tiles), tile, tile, 1), np.float32)
    for i, t in enumerate(tiles):
        raw = slide.read(oy + t.y, oy + t.y + t.height, ox + t.x, ox + t.x + t.width)
        x = Normalization.apply(raw, lo, hi, 1.0).mean(axis=-1)
        out[i, : t.height, : t.width, 0] = x
    return out


def encode_tiles(encoder, slide, tiles: list[CropTile], lo, hi, tile: int, origin: tuple[int, int] = (0, 0),
                 block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flattened codes, mean, spread) of every tile, reading ``block`` tiles at a time."""
    codes, means, spreads = [], [], []
    for i in range(0, len(tiles), block):
        data = read_grey_tiles(slide, tiles[i:i + block], lo, hi, tile, origin)
        codes.append(np.asarray(encoder(data, training=False)).reshape(len(data), -1))
        means.append(data.mean(axis=(1, 2, 3)))
        spreads.append(data.std(axis=(1, 2, 3)))
    return np.concatenate(codes), np.concatenate(means), np.concatenate(spreads)


def _fit_autoencoder(ae, data: np.ndarray, epochs: int, rng: np.random.Generator,
                     report: Callable[[float, str], None], should_cancel: Callable[[], bool] | None,
                     batch: int = 32) -> None:
    """Train ``ae`` to reproduce ``data`` with ``model.fit``: each epoch a new permutation (from ``rng``) cut
    into ``len(data) // batch`` batches (at least one; the remainder is left out that epoch), progress
    reported per epoch, cancellation checked before every batch."""
    import keras

    from fosgate.errors import Cancelled

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = rng.permutation(len(data))

        def __len__(self):
            return max(1, len(data) // batch)

        def __getitem__(self, i):
            b = data[np.sort(self.order[i * batch:(i + 1) * batch])]
            return b, b

        def on_epoch_end(self):
            self.order = rng.permutation(len(data))

    class Progress(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if should_cancel and should_cancel():
                raise Cancelled("Clustering cancelled.")

        def on_epoch_end(self, epoch, logs=None):
            report(0.05 + 0.6 * (epoch + 1) / max(epochs, 1), f"Autoencoder epoch {epoch + 1}/{epochs}: "
                   f"reconstruction error {float((logs or {}).get('loss', float('nan'))):.4f}.")

    if epochs > 0:
        ae.fit(Batches(), epochs=epochs, shuffle=False, verbose=0, callbacks=[Progress()])


def cluster_tiles(
    slide,
    *,
    tile: int = 128,
    margin: int = 4,
    k: int = 5,
    seed: int = 0,
    epochs: int = 10,
    max_tiles: int = 2000,
    region: tuple[int, int, int, int] | None = None,
    normalization: Normalization | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    encode: Callable | None = None,
) -> ClusterResult:
    """Cluster every crop tile of ``slide`` (or ``region``: x, y, w, h). Only the autoencoder's
    training sample is held in memory; all tiles are then encoded in streamed blocks, here or by
    ``encode(encoder, tiles, lo, hi, tile, origin) -> (codes, mean, spread)`` (e.g. over Dask)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from fosgate.errors import InvalidInput

    report = progress or (lambda f, m: None)
    info = slide.info
    rx, ry, rw, rh = region if region else (0, 0, info.width, info.height)
    tiles = plan_crop_tiles(rh, rw, tile, margin)
    if len(tiles) < k:
        raise InvalidInput(f"The image has {len(tiles)} tiles of {tile} px; that is fewer than the {k} clusters asked for.")
    norm = normalization or Normalization()
    lo, hi = norm.stats(slide)
    rng = np.random.default_rng(seed)
    train_idx = np.sort(rng.choice(len(tiles), size=min(max_tiles, len(tiles)), replace=False))
    report(0.02, f"Reading {len(train_idx)} of {len(tiles)} tiles to train the autoencoder.")
    data = read_grey_tiles(slide, [tiles[i] for i in train_idx], lo, hi, tile, (rx, ry))
    ae, encoder = build_autoencoder(tile, seed)
    _fit_autoencoder(ae, data, epochs, rng, report, should_cancel)
    del data
    report(0.65, f"Encoding {len(tiles)} tiles.")
    if encode is not None:
        codes, mean, spread = encode(encoder, tiles, lo, hi, tile, (rx, ry))
    else:
        codes, mean, spread = encode_tiles(encoder, slide, tiles, lo, hi, tile, (rx, ry))
    n_comp = int(min(16, codes.shape[1], len(codes) - 1)) or 1
    reduced = PCA(n_components=n_comp, random_state=seed).fit_transform(codes)
    reduced /= reduced.std() + 1e-8
    feats = np.concatenate([reduced, 4 * np.stack([(mean - mean.mean()) / (mean.std() + 1e-8),
                                                   (spread - spread.mean()) / (spread.std() + 1e-8)], 1)], 1)
    report(0.7, "Grouping tiles with k-means.")
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(feats)
    # order clusters by brightness: 0 = darkest
    order = np.argsort([mean[km.labels_ == c].mean() for c in range(k)])
    rank = np.empty(k, int)
    rank[order] = np.arange(k)
    clusters = rank[km.labels_]
    report(0.8, "Drawing the t-SNE map.")
    perplexity = float(min(30, max(2, (len(feats) - 1) // 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(feats)
    shifted = [CropTile(t.row, t.col, t.y + ry, t.x + rx, t.height, t.width, t.core_y + ry, t.core_x + rx,
                        t.core_height, t.core_width) for t in tiles]
    return ClusterResult(shifted, clusters.astype(int), tsne.astype(np.float64), mean.astype(np.float64), k)


def plot_clusters(result: ClusterResult, slide, out_dir: Path, normalization: Normalization | None = None,
                  montage_side: int = 10) -> list[Path]:
    """Cluster-size histogram, t-SNE scatter and one 10x10 montage per cluster (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = result.k
    colors = plt.cm.tab10(np.arange(k) % 10)
    sizes = np.bincount(result.clusters, minlength=k)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(range(k), sizes, color=colors)
    ax.set_xlabel("cluster (0 = darkest)")
    ax.set_ylabel("tiles")
    ax.set_xticks(range(k))
    fig.tight_layout()
    paths.append(out_dir / "cluster_histogram.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 6))
    for c in range(k):
        sel = result.clusters == c
        ax.scatter(result.tsne[sel, 0], result.tsne[sel, 1], s=6, color=colors[c], label=f"{c} ({sel.sum()})")
    ax.legend(title="cluster", markerscale=3, fontsize=8)
    ax.set_title("t-SNE of tile codes")
    fig.tight_layout()
    paths.append(out_dir / "tsne.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    norm = normalization or Normalization()
    lo, hi = norm.stats(slide)
    rng = np.random.default_rng(0)
    for c in range(k):
        idx = np.nonzero(result.clusters == c)[0]
        pick = rng.choice(idx, size=min(len(idx), montage_side**2), replace=False) if len(idx) else []
        t0 = result.tiles[0]
        side = max(t0.height, t0.width)
        canvas = np.zeros((montage_side * side, montage_side * side), np.uint8)
        for j, i in enumerate(sorted(pick)):
            t = result.tiles[i]
            raw = slide.read(t.y, t.y + t.height, t.x, t.x + t.width)
            g = (Normalization.apply(raw, lo, hi, 1.0).mean(axis=-1) * 255).astype(np.uint8)
            r, q = divmod(j, montage_side)
            canvas[r * side:r * side + t.height, q * side:q * side + t.width] = g
        paths.append(out_dir / f"montage_cluster_{c}.png")
        Image.fromarray(canvas).save(paths[-1])
    return paths


def write_cluster_csv(result: ClusterResult, path: Path) -> Path:
    import csv

    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["index", "x", "y", "width", "height", "cluster", "tsne_x", "tsne_y", "mean_intensity"])
        for i, t in enumerate(result.tiles):
            wr.writerow([i, t.x, t.y, t.width, t.height, int(result.clusters[i]), f"{result.tsne[i, 0]:.4f}",
                         f"{result.tsne[i, 1]:.4f}", f"{result.mean_intensity[i]:.5f}"])
    return Path(path)


def read_cluster_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{"index": int(r["index"]), "x": int(r["x"]), "y": int(r["y"]), "width": int(r["width"]),
             "height": int(r["height"]), "cluster": int(r["cluster"]), "tsne_x": float(r["tsne_x"]),
             "tsne_y": float(r["tsne_y"]), "mean_intensity": float(r["mean_intensity"])} for r in rows]
