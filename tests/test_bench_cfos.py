"""bench/bench_cfos.py without training: the fold definitions keep test images out of training, and
the human ceiling on the real segebarth-cfos data (skipped without ../shared) has every expert of a lab
scored against the consensus, with StarDist's matching rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # bench_cfos imports bench/common.py
    spec = importlib.util.spec_from_file_location("bench_cfos", BENCH / "bench_cfos.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cfos"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _fake(b, name, lab, group=""):
    z = np.zeros((8, 8), bool)
    return b.Sample(name, lab, 1.0, group, np.zeros((8, 8), np.uint8), z, {"expert_1": z})


def test_folds_partition_the_test_images_and_never_train_on_them():
    b = _bench()
    samples = ([_fake(b, f"wue1_{i}", "wue1", str(g)) for i, g in enumerate([0, 1, 3, 4, 6, 7] * 4)]
               + [_fake(b, f"mue_{i}", "mue") for i in range(3)] + [_fake(b, f"inns1_{i}", "inns1") for i in range(3)])
    folds = b.make_folds(samples, ["within", "lolo"], wue1_folds=3)
    groups = {s.name: s.group for s in samples}
    for proto in ("within", "lolo"):
        fs = [f for f in folds if f["protocol"] == proto]
        tested = [n for f in fs for n in f["test"]]
        assert sorted(tested) == sorted(s.name for s in samples)  # every image tested exactly once
        for f in fs:
            assert not set(f["train"]) & set(f["test"]) and f["train"]
            if proto == "lolo":
                assert {n.split("_")[0] for n in f["train"]} == {"wue1", "mue", "inns1"} - {f["lab"]}
            elif f["lab"] == "wue1":  # grouped: an animal group is never on both sides
                assert not {groups[n] for n in f["train"]} & {groups[n] for n in f["test"]}
                assert len(f["test"]) == 8
            else:
                assert len(f["test"]) == 1 and len(f["train"]) == 2
    assert len([f for f in folds if f["protocol"] == "within"]) == 9


@pytest.mark.skipif(not (SHARED_DATA / "segebarth-cfos").is_dir(), reason="../shared/data/segebarth-cfos missing")
def test_human_ceiling_on_real_data_scores_every_expert():
    b = _bench()
    samples = b.load_samples(("inns1",))
    assert [s.name for s in samples] == ["inns1_1108", "inns1_1117", "inns1_1124"]
    ceiling = b.human_ceiling(samples)
    assert len(ceiling["rows"]) == 3 * 4
    lab = ceiling["labs"]["inns1"]
    f1 = sorted(v["f1"] for v in lab["experts"].values())
    assert lab["median_expert_f1"] == pytest.approx((f1[1] + f1[2]) / 2)
    for v in lab["experts"].values():
        assert v["tp"] + v["fn"] == v["n_true"] and v["f1_ci95"][0] <= v["f1"] <= v["f1_ci95"][1]
    # the consensus against itself is perfect
    from fosgate.core.metrics import detection_scores

    assert detection_scores(samples[0].consensus, samples[0].consensus)["f1"] == 1.0
