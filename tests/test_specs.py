"""Typed job specs (fosgate.specs) without gRPC: defaults in one place, every bound at submit time."""

from __future__ import annotations

import math
import re
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from fosgate.errors import InvalidInput
from fosgate.specs import (
    SPECS,
    AutoLabelSpec,
    ClusterSpec,
    ExportDatasetSpec,
    ExportProposalsSpec,
    ExportTilesSpec,
    PredictSpec,
    SamSpec,
    TrainSpec,
    check_region,
    crop_tile_count,
    spec_from_job,
)

PROTO = Path(__file__).resolve().parents[1] / "protos" / "fosgate" / "v1" / "fosgate.proto"


def test_zero_means_default_and_specs_are_frozen():
    spec = TrainSpec.create(epochs=0, tile_size=0, batch_size=0, val_fraction=0.0, learning_rate=0.0, name="")
    assert spec == TrainSpec()
    assert (spec.epochs, spec.tile_size, spec.batch_size, spec.val_fraction, spec.name) == (30, 256, 8, 0.2, "unet")
    with pytest.raises(FrozenInstanceError):
        spec.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [
    {"batch_size": -1}, {"val_fraction": math.nan}, {"val_fraction": 5.0}, {"val_fraction": -0.1},
    {"learning_rate": -1.0}, {"learning_rate": math.inf}, {"steps_per_epoch": -3}, {"epochs": 2**31},
    {"epochs": 10_000, "steps_per_epoch": 10_000}, {"epochs": -1}, {"tile_size": 100}, {"seed": -5},
    {"name": "n" * 300}, {"name": "a\nb"}, {"name": "   "}, {"patience": -1}, {"label_ids": ("x" * 65,)},
    {"base_model_id": "m" * 100},
])
def test_train_bounds_are_invalid_argument(bad):
    with pytest.raises(InvalidInput) as err:
        TrainSpec.create(**bad)
    assert str(err.value).endswith(".") and len(str(err.value)) < 400


def test_train_spec_sets_every_train_config_field():
    """The core's TrainConfig defaults (20 epochs there) never reach a job: the spec sets each field."""
    cfg = TrainSpec.create(epochs=7, steps_per_epoch=0).train_config()
    assert cfg.epochs == 7 and cfg.steps_per_epoch is None and cfg.batch_size == 8 and cfg.val_fraction == 0.2
    assert cfg.arch == "unet2" and cfg.tile_size == 256 and cfg.pixel_size_um == 0.0
    assert TrainSpec.create(arch="reference", pixel_size_um=0.65).train_config().arch == "reference"
    with pytest.raises(InvalidInput):
        TrainSpec.create(arch="resnet")


def test_predict_spec_zero_means_the_models_own_post_processing():
    opts = PredictSpec.create(slide_id="sl_1", model_id="md_1").predict_options(1e9)
    assert opts.threshold is None and opts.min_size_px is None and opts.seed_threshold is None
    assert opts.split_touching is None and not opts.tta
    opts = PredictSpec.create(slide_id="sl_1", model_id="md_1", tta=True, min_area_um2=12.5, seed_threshold=0.7,
                              pixel_size_um=0.5).predict_options(1e9)
    assert opts.tta and opts.min_area_um2 == 12.5 and opts.seed_threshold == 0.7 and opts.pixel_size_um == 0.5


@pytest.mark.parametrize("bad", [
    {"tile_size": 100}, {"tile_size": -16}, {"halo": -1}, {"halo": 5000}, {"threshold": 1.0}, {"threshold": -0.2},
    {"threshold": math.nan}, {"min_size": -3}, {"stem": "../x"}, {"stem": "/tmp/x"}, {"stem": "x" * 300},
    {"region": (-1, 0, 5, 5)}, {"slide_id": ""}, {"model_id": ""},
])
def test_predict_bounds(bad):
    values = {"slide_id": "sl_1", "model_id": "md_1", **bad}
    with pytest.raises(InvalidInput):
        PredictSpec.create(**values)


def test_predict_defaults():
    spec = PredictSpec.create(slide_id="sl_1", model_id="md_1", min_size=0, region=(0, 0, 0, 0))
    assert spec.min_size == 0 and spec.threshold == 0.0 and spec.region is None and spec.tile_size == 0  # 0: the model's own


def test_tile_export_margin_zero_only_with_a_tile_size():
    assert ExportTilesSpec.create(slide_id="s", tile_size=0, margin=0).margin == 4
    assert ExportTilesSpec.create(slide_id="s", tile_size=64, margin=0).margin == 0
    with pytest.raises(InvalidInput):
        ExportTilesSpec.create(slide_id="s", tile_size=8, margin=4)
    with pytest.raises(InvalidInput):
        ExportTilesSpec.create(slide_id="s", format="jpg")


def test_regions_outside_the_slide_are_refused():
    check_region((0, 0, 100, 100), 100, 100)
    for r in [(1, 0, 100, 100), (0, 0, 101, 5), (200, 200, 5, 5)]:
        with pytest.raises(InvalidInput, match="outside"):
            check_region(r, 100, 100)
    spec = ClusterSpec.create(slide_id="s", region=(5000, 5000, 512, 512))
    with pytest.raises(InvalidInput, match="outside"):
        spec.check_against(1000, 1000)
    # a region inside the slide but too small for k clusters: said at submit time, not "fewer than 5" later
    small = ClusterSpec.create(slide_id="s", region=(0, 0, 200, 128), k=5)
    with pytest.raises(InvalidInput, match="fewer than the 5 clusters"):
        small.check_against(1000, 1000)


def test_crop_tile_count_matches_the_core_plan():
    from fosgate.core.tiling import plan_crop_tiles

    for h, w, tile, margin in [(1000, 700, 128, 4), (128, 128, 128, 4), (50, 300, 64, 0), (4097, 129, 128, 8)]:
        assert crop_tile_count(h, w, tile, margin) == len(plan_crop_tiles(h, w, tile, margin))


def test_autolabel_and_sam_bounds():
    ok = AutoLabelSpec.create(slide_id="s", regions=((0, 0, 64, 64),))
    assert ok.sam == SamSpec() and ok.method == "classical"
    for bad in [{"regions": ()}, {"regions": ((0, 0, 5000, 5000),)}, {"method": "magic"},
                {"method": "model"}, {"regions": ((0, 0, 8, 8),) * 10_001},
                {"sam": {"points_per_side": -1}}, {"sam": {"max_area": 10, "min_area": 20}},
                {"sam": {"has_thresholds": True, "pred_iou_thresh": 2.0}}]:
        values = {"slide_id": "s", "regions": ((0, 0, 64, 64),), **bad}
        with pytest.raises(InvalidInput):
            AutoLabelSpec.create(**values)
    zero = AutoLabelSpec.create(slide_id="s", regions=((0, 0, 8, 8),),
                                sam={"has_thresholds": True, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    assert zero.sam.pred_iou_thresh == 0.0 and zero.sam.stability_score_thresh == 0.0
    unset = AutoLabelSpec.create(slide_id="s", regions=((0, 0, 8, 8),), sam={"pred_iou_thresh": 0.3})
    assert unset.sam.pred_iou_thresh == 0.8  # without has_thresholds the defaults apply


def test_sam_defaults_live_in_one_place():
    from fosgate.core.sam import SamFilter

    assert SamFilter(**SamSpec().filter_json()) == SamFilter()


@pytest.mark.parametrize("spec", [
    TrainSpec.create(label_ids=("lb_1", "lb_2"), epochs=3), PredictSpec.create(slide_id="s", model_id="m",
                                                                               region=(1, 2, 3, 4), stem="x"),
    ExportTilesSpec.create(slide_id="s", tile_size=64, margin=0), ClusterSpec.create(slide_id="s", k=3),
    AutoLabelSpec.create(slide_id="s", regions=((0, 0, 8, 8), (8, 0, 8, 8)), method="sam"),
    ExportProposalsSpec.create(state="pending", proposal_ids=("pr_1",)), ExportDatasetSpec.create(format="tif"),
])
def test_json_round_trip(spec):
    import json

    data = json.loads(json.dumps(spec.to_json()))
    assert spec_from_job(spec.kind, data) == spec
    assert spec_from_job(spec.kind, {**data, "from_a_newer_version": 1}) == spec


def test_every_job_kind_has_a_spec():
    assert set(SPECS) == {"train", "predict", "export_tiles", "cluster", "autolabel", "export_proposals",
                          "export_dataset"}


def _proto_defaults(message: str) -> dict[str, str]:
    """field -> the number/word after 'default' in the field's comment in the .proto."""
    text = PROTO.read_text()
    body = re.search(r"message " + message + r" \{(.*?)\n\}", text, re.S).group(1)
    out = {}
    for line in body.splitlines():
        m = re.match(r"\s*\w+ (\w+) = \d+;\s*//.*?default:? \"?([-\w.]+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


@pytest.mark.parametrize("message,spec", [
    ("TrainRequest", TrainSpec()), ("PredictRequest", PredictSpec()), ("ExportTilesRequest", ExportTilesSpec()),
    ("ClusterRequest", ClusterSpec()), ("SamParams", SamSpec()),
])
def test_proto_comments_state_the_spec_defaults(message, spec):
    stated = _proto_defaults(message)
    names = {f.name for f in fields(spec)}
    checked = 0
    for name, word in stated.items():
        if name not in names or getattr(spec, name) == "":
            continue
        value = getattr(spec, name)
        if isinstance(value, str):
            assert word == value, (message, name)
        else:
            assert float(word) == float(value), (message, name, word, value)
        checked += 1
    assert checked >= 2, (message, stated)
