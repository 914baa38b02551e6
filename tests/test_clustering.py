"""Tile clustering (autoencoder + k-means) in the library, on a small synthetic slide: the autoencoder is
trained with Keras ``fit`` and callbacks (progress per epoch, cancellation before each batch)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fosgate.core.clustering import cluster_tiles
from fosgate.core.slides import open_slide
from fosgate.core.synthetic import generate_cfos
from fosgate.errors import Cancelled


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    image, _, _ = generate_cfos(512, 384, seed=3)
    path = tmp_path_factory.mktemp("clusters") / "s.tif"
    tifffile.imwrite(path, image)
    return path


def test_clustering_is_deterministic_reports_each_epoch_and_learns(slide_path):
    messages = []
    with open_slide(slide_path) as slide:
        a = cluster_tiles(slide, tile=64, k=3, epochs=3, seed=1, progress=lambda f, m: messages.append((f, m)))
        b = cluster_tiles(slide, tile=64, k=3, epochs=3, seed=1)
    assert len(a.tiles) == len(a.clusters) == 63 and set(a.clusters) <= {0, 1, 2}  # 7 x 9 overlapping tiles
    assert np.array_equal(a.clusters, b.clusters) and np.allclose(a.tsne, b.tsne)
    # cluster 0 is the darkest, as the module promises
    means = [a.mean_intensity[a.clusters == c].mean() for c in range(3) if np.any(a.clusters == c)]
    assert means == sorted(means)
    epochs = [m for _, m in messages if m.startswith("Autoencoder epoch")]
    assert [m.split(":")[0] for m in epochs] == ["Autoencoder epoch 1/3", "Autoencoder epoch 2/3",
                                                  "Autoencoder epoch 3/3"]
    errors = [float(m.rsplit(" ", 1)[1].rstrip(".")) for m in epochs]
    assert errors[-1] < errors[0]  # the reconstruction error falls while it trains
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions)


def test_clustering_stops_when_cancelled(slide_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2  # during the first epoch

    with open_slide(slide_path) as slide, pytest.raises(Cancelled):
        cluster_tiles(slide, tile=64, k=3, epochs=50, seed=0, should_cancel=cancel)
    assert len(calls) == 3
