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
    PretrainSpec,
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
    {"base_model_id": "m" * 100}, {"members": 9}, {"members": -2},
    {"epochs": 500, "steps_per_epoch": 400, "members": 8},
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
    assert cfg.members == 1 and TrainSpec.create(members=3).train_config().members == 3
    with pytest.raises(InvalidInput):
        TrainSpec.create(arch="resnet")
    with pytest.raises(InvalidInput, match="for each of 8 networks"):  # the step cap counts every network
        TrainSpec.create(epochs=400, steps_per_epoch=400, members=8)


def test_pretrain_spec_defaults_and_every_pretrain_config_field():
    """0 / "" mean the spec's defaults (tiles 0 too: proto3 cannot tell it from unset); the core's
    PretrainConfig gets every one of its fields from the spec, never its own default."""
    from fosgate.core.pretrain import PretrainConfig
    from fosgate.core.unet import DEFAULT_ARCH

    spec = PretrainSpec.create(slide_ids=("sl_1",), tiles=0, epochs=0, masking="", mask_ratio=0.0, name="", arch="")
    assert spec == PretrainSpec(slide_ids=("sl_1",))
    assert (spec.tiles, spec.epochs, spec.masking, spec.arch, spec.name) == (512, 20, "intensity", DEFAULT_ARCH,
                                                                             "pretrained")
    with pytest.raises(FrozenInstanceError):
        spec.tiles = 3  # type: ignore[misc]
    custom = dict(epochs=3, steps_per_epoch=7, batch_size=2, tile_size=96, patch_size=32, mask_ratio=0.3,
                  masking="random", learning_rate=0.01, tiles=40, seed=9)
    cfg = PretrainSpec.create(slide_ids=("sl_1",), **custom).pretrain_config()
    assert {f.name for f in fields(PretrainConfig)} == set(custom)
    assert {k: getattr(cfg, k) for k in custom} == custom


@pytest.mark.parametrize("bad", [
    {"slide_ids": ()}, {"slide_ids": ("sl_1", "sl_1")}, {"slide_ids": ("x" * 65,)},
    {"slide_ids": tuple(f"sl_{i}" for i in range(1001))}, {"tiles": 4}, {"tiles": -1}, {"tiles": 200_000},
    {"tile_size": 100}, {"tile_size": 1024}, {"patch_size": 24}, {"mask_ratio": math.nan}, {"mask_ratio": 0.99},
    {"masking": "foo"}, {"masking": "x" * 300}, {"learning_rate": -1.0}, {"epochs": 2.5}, {"epochs": True},
    {"epochs": 1000, "steps_per_epoch": 10_000}, {"seed": -1}, {"arch": "resnet"}, {"name": "  "},
    {"name": "a\nb"}, {"pixel_size_um": -0.5}, {"pixel_size_um": math.inf}, {"tiles": 20_000, "tile_size": 512},
])
def test_pretrain_bounds_are_invalid_argument(bad):
    with pytest.raises(InvalidInput) as err:
        PretrainSpec.create(**{"slide_ids": ("sl_1",), **bad})
    assert str(err.value).endswith(".") and len(str(err.value)) < 400


def test_pretrain_tile_memory_counts_channels():
    spec = PretrainSpec.create(slide_ids=("sl_1",), tiles=4096, tile_size=256)  # 1 GiB of grey tiles: allowed
    spec.check_tile_memory(1)
    with pytest.raises(InvalidInput, match="x 3 channels take 3.0 GiB"):
        spec.check_tile_memory(3)


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
    PretrainSpec.create(slide_ids=("sl_1", "sl_2"), masking="random", tiles=64, pixel_size_um=0.65),
])
def test_json_round_trip(spec):
    import json

    data = json.loads(json.dumps(spec.to_json()))
    assert spec_from_job(spec.kind, data) == spec
    assert spec_from_job(spec.kind, {**data, "from_a_newer_version": 1}) == spec


def test_every_job_kind_has_a_spec():
    assert set(SPECS) == {"train", "pretrain", "predict", "export_tiles", "cluster", "autolabel", "export_proposals",
                          "export_dataset", "export_model", "count_regions"}


@pytest.mark.parametrize("bad", [dict(model_id=""), dict(model_id="md_1", format="pth"),
                                 dict(model_id="md_1", authors=("x" * 300,)),
                                 dict(model_id="md_1", authors=tuple(f"a{i}" for i in range(21)))])
def test_export_model_spec_bounds(bad):
    from fosgate.specs import ExportModelSpec

    with pytest.raises(InvalidInput):
        ExportModelSpec.create(**bad)


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
    ("TrainRequest", TrainSpec()), ("PretrainRequest", PretrainSpec()), ("PredictRequest", PredictSpec()),
    ("ExportTilesRequest", ExportTilesSpec()),
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


def test_app_parts_validate_without_grpc(tmp_path):
    """The App's parts (ingest, labels + review, job submission) are plain Python: their checks run without gRPC."""
    import numpy as np
    import tifffile

    from fosgate.app import App
    from fosgate.config import ServerConfig
    from fosgate.errors import Precondition, TooLarge

    app = App(ServerConfig(data_dir=tmp_path / "data", dask_scheduler="off", max_queued_jobs=2))
    try:
        tifffile.imwrite(tmp_path / "s.tif", np.zeros((64, 64), np.uint8))
        data = (tmp_path / "s.tif").read_bytes()
        slide = app.slides.upload_slide("s.tif", "image", None, len(data), "", [data])
        labels = np.zeros((32, 32), np.uint32)
        labels[4:9, 4:9] = 1
        prop = app.labels.add_proposal(slide.id, labels, (0, 0, 32, 32), "classical", "")
        _, label = app.labels.review_proposal(prop.id, "accept", reviewer="ana")
        with pytest.raises(Precondition):
            app.labels.review_proposal(prop.id, "reject")
        _, v2 = app.labels.review_proposal(prop.id, "replace", mask_slide_id="", roi_zip=b"", geojson=(
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1,1],[9,1],[9,9],[1,9],[1,1]]]}}'),
            coordinates="tile", replaces_label_id=label.id)
        assert v2.parent_id == label.id and v2.version == 2
        with pytest.raises(InvalidInput, match="outside"):
            app.jobs.start_tile_export(ExportTilesSpec.create(slide_id=slide.id, region=(60, 60, 10, 10)))
        for _ in range(2):
            app.store.add_job("predict", {})
        with pytest.raises(TooLarge, match="limit is 2"):
            app.jobs.start_tile_export(ExportTilesSpec.create(slide_id=slide.id))
    finally:
        app.close()
