"""rasterio's vector <-> raster tools in pixel coordinates, one call at a time.

fosgate never georeferences: every transform it hands rasterio maps pixel (column, row) to image
coordinates. When several threads start rasterising at once (concurrent reviews, exports in Dask
threads), rasterio raises a spurious ``NotGeoreferencedWarning`` ("Dataset has no geotransform ...")
for transforms that are plain translations: reproduced with 8 threads in a fresh process, one warning
per run, none when the calls are serialised; odc-geo issue 131 reports the same under Dask. These
wrappers hold one process-wide lock around each call: the shapes fosgate rasterises or traces are a
tile's or an object's bounding box, so the calls are short and serialising them costs little.
"""

from __future__ import annotations

import threading

import numpy as np

_lock = threading.Lock()


def rasterize(shapes, out_shape: tuple[int, int], transform, dtype=np.uint8) -> np.ndarray:
    """``rasterio.features.rasterize`` (a pixel is inside a shape when its centre is), serialised."""
    from rasterio import features

    with _lock:
        return features.rasterize(shapes, out_shape=out_shape, dtype=dtype, transform=transform)


def shapes(source: np.ndarray, mask: np.ndarray, transform, connectivity: int = 4) -> list:
    """``rasterio.features.shapes`` as a list of (geometry, value), serialised."""
    from rasterio import features

    with _lock:
        return list(features.shapes(source, mask=mask, connectivity=connectivity, transform=transform))
