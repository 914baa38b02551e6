"""Helpers shared by the benchmarks: where results go and what machine produced them.

Every benchmark writes one JSON file into its ``--out`` folder (default ``bench/results``, committed,
so BENCHMARKS.md can be re-rendered from it) through :func:`save`, which stamps the machine, the
library versions, the date and the command line. ``bench/report.py`` turns those files into
BENCHMARKS.md and the PNG plots.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"


def cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def machine_info() -> dict[str, Any]:
    """Machine and library versions, for the report's provenance lines."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in ("numpy", "tensorflow", "keras", "dask", "grpc", "tifffile", "skimage", "sklearn"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = str(module.__version__)
    return {"cpus": cpus(), "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(), "load_average_1min": round(os.getloadavg()[0], 2),
            "versions": versions}


def save(out: Path, name: str, result: dict[str, Any]) -> Path:
    """Stamp ``result`` in place with the machine, date and command, write it to ``out/name.json`` and
    return the path."""
    out.mkdir(parents=True, exist_ok=True)
    stamped = result
    stamped.setdefault("machine", machine_info())
    stamped.setdefault("date", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    args = [a.replace(f"{ROOT}/", "") for a in sys.argv[1:]]
    stamped.setdefault("command", " ".join([Path(sys.argv[0]).name, *args]))
    path = out / f"{name}.json"
    path.write_text(json.dumps(stamped, indent=2))
    return path


def need_data(folder: str) -> Path:
    """``../shared/data/<folder>``, or exit with a message saying where the data must be."""
    path = SHARED_DATA / folder
    if not path.is_dir():
        raise SystemExit(f"{path} is missing: the benchmark data lives in ../shared/data/{folder}")
    return path


ARCHS = ("reference", "default")


def fit_arch(arch: str, pairs: list, config, normalization) -> tuple[Any, dict[str, Any]]:
    """Train ``arch`` on ``pairs`` with ``config`` (a ``TrainConfig``) and return ``(predict, metrics)``.

    ``predict(image, lo=None, hi=None, *, min_size_px=None, threshold=None, split_touching=False)`` gives the
    uint32 instance labels of a raw ``(h, w, C)`` image, normalised with ``lo``/``hi`` (e.g. a volume's)
    or its own statistics.

    - ``reference``: ``train_unet`` (the paper's net), the whole image predicted seam-free, thresholded at
      ``threshold`` (None: the calibrated one in ``metrics``), connected components of at least
      ``min_size_px`` (None: 1) (and a distance-transform watershed of touching cells with ``split_touching``).
    - ``default``: ``train_model`` (fosgate's unet2, the same config otherwise) and the model's own
      instances (seeded watershed on its centre map, its calibrated threshold, seed level and min size,
      as a user gets them); ``min_size_px`` and ``threshold`` override them when given.
    """
    from dataclasses import asdict, replace

    import numpy as np

    from fosgate.core.instances import label_mask
    from fosgate.core.normalize import Normalization
    from fosgate.core.predict import predict_array
    from fosgate.core.training import train_model, train_unet
    from fosgate.core.unet import receptive_field_radius, required_halo

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; one of {ARCHS}")
    if arch == "default":
        model = train_model(pairs, replace(config, arch="unet2"), normalization=normalization)

        def predict_default(image, lo=None, hi=None, *, min_size_px=None, threshold=None, split_touching=False):
            post = {k: v for k, v in (("min_size_px", min_size_px), ("threshold", threshold)) if v is not None}
            return model.predict_instances(image, lo=lo, hi=hi, **post)

        return predict_default, {**model.metrics, "post": asdict(model.post)}
    net, metrics, _ = train_unet(pairs, normalization, config)
    halo = required_halo(receptive_field_radius(net))

    def predict_reference(image, lo=None, hi=None, *, min_size_px=None, threshold=None, split_touching=False):
        if lo is None or hi is None:
            lo, hi = normalization.stats_of_array(image)
        x = Normalization.apply(image, lo, hi, normalization.clip_max)
        prob = predict_array(net, x, tile=256, halo=halo)
        lab = np.zeros(prob.shape, np.uint32)
        thr = float(metrics["threshold"]) if threshold is None else threshold
        label_mask(prob >= thr, lab, min_size=min_size_px or 1, split_touching=split_touching)
        return lab

    return predict_reference, dict(metrics)


def t_interval(values: list[float]) -> list[float]:
    """95 % Student-t interval of the mean of ``values`` (seeds); one value: the value itself, twice."""
    import numpy as np

    v = np.asarray(values, float)
    if len(v) < 2:
        return [float(v.mean()), float(v.mean())]
    from scipy import stats

    h = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return [float(v.mean() - h), float(v.mean() + h)]
