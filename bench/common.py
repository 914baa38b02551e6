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
