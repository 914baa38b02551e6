"""Model export (issue 16 item 5): bioimage.io packages that bioimageio.core validates and runs, plain Keras and
SavedModel zips that reproduce fosgate's predictions, and the ExportModel job over a real server.

Nothing is trained: the networks are randomly initialised (seeded), which is enough to check that the package
describes the network and fosgate's normalisation exactly (a random U-Net's output still depends on every
pre-processing detail)."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# bioimage.io checks need the 'export' extra (scripts/test.sh installs it); the Keras/SavedModel tests do not
needs_export_extra = pytest.mark.skipif(not (_installed("bioimageio.core") and _installed("tf2onnx")),
                                        reason="needs the 'export' extra (bioimageio.core, tf2onnx)")


def _save(directory: Path, network, **meta_fields) -> Path:
    from fosgate.core.modelio import ModelMeta, save_model
    from fosgate.core.normalize import Normalization

    fields = {"model_id": "md_export0001", "name": "cfos", "version": 3, "created": 0.0, "in_channels": 1,
              "normalization": Normalization().to_json(), "receptive_field": 94, "train_tile_size": 128,
              "threshold": 0.42, "metrics": {"val_pixel_f1": 0.8}}
    fields.update(meta_fields)
    return save_model(network, ModelMeta(**fields), directory)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    """The reference U-Net (random, seed 0) saved as fosgate saves models, with its measured receptive field."""
    from fosgate.core.unet import build_unet, receptive_field_radius

    network = build_unet(1, seed=0)
    return _save(tmp_path_factory.mktemp("model") / "md", network, receptive_field=receptive_field_radius(network))


@pytest.fixture(scope="module")
def package(reference_dir, tmp_path_factory):
    from fosgate.core.export_model import export_model

    return export_model(reference_dir, tmp_path_factory.mktemp("out"), "bioimageio", authors=["A. Biologist"])


def _rdf(package: Path) -> dict:
    import yaml

    with zipfile.ZipFile(package) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def _failed(report: dict) -> list:
    return [d for d in report["details"] if d[1] == "failed"]


@needs_export_extra
def test_bioimageio_package_passes_test_model_with_every_weight_format(package):
    from fosgate.core.export_model import validate_bioimageio

    report = validate_bioimageio(package)  # every weight format in the package
    assert report["status"] == "passed", _failed(report)
    checks = " ".join(d[0] for d in report["details"])
    assert set(_rdf(package)["weights"]) == {"keras_v3", "tensorflow_saved_model_bundle", "onnx"}
    for fmt in ("keras_v3", "tensorflow_saved_model_bundle", "onnx"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in checks
    assert not Path("bioimageio_unzipped_tf_weights").exists()
    # bioimageio.core sets KERAS_BACKEND=torch in the environment when imported; child processes started
    # afterwards (Dask workers, the CLI run by tests) must still run Keras on our backend
    import subprocess
    import sys

    import keras

    child = subprocess.run([sys.executable, "-c", "import keras; print(keras.backend.backend())"],
                           capture_output=True, text=True, timeout=300)
    assert child.stdout.strip().splitlines()[-1] == keras.backend.backend(), child.stderr[-2000:]


@needs_export_extra
def test_package_describes_fosgate_normalisation_threshold_and_halo(package, reference_dir):
    from fosgate.core.unet import required_halo

    meta = json.loads((reference_dir / "meta.json").read_text())
    rdf = _rdf(package)
    raw, maps = rdf["inputs"][0], rdf["outputs"][0]
    assert [p["id"] for p in raw["preprocessing"]] == ["scale_range", "clip"]
    scale, clip = (p["kwargs"] for p in raw["preprocessing"])
    assert (scale["min_percentile"], scale["max_percentile"], scale["axes"]) == (1.0, 99.8, ["y", "x"])
    assert (clip["min"], clip["max"]) == (0.0, 1.5)
    halo = required_halo(meta["receptive_field"])
    assert [a.get("halo") for a in maps["axes"] if a["type"] == "space"] == [halo, halo]
    assert [a for a in maps["axes"] if a["type"] == "channel"][0]["channel_names"] == ["foreground"]
    assert [a["size"]["min"] for a in raw["axes"] if a["type"] == "space"] == [2 * halo + 16] * 2
    assert rdf["config"]["fosgate"]["threshold"] == pytest.approx(0.42)
    assert rdf["authors"] == [{"name": "A. Biologist"}] and rdf["license"] == "MIT" and rdf["cite"]
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.md").decode()
    assert {"model.keras", "tf_saved_model.zip", "model.onnx", "test_input.npy", "test_output.npy", "cover.png",
            "README.md", "fosgate-model.json", "rdf.yaml"} <= names
    assert "0.42" in readme and "whole slide" in readme and f"Halo {halo} px" in readme


@needs_export_extra
def test_a_wrong_test_output_fails_the_check(package, tmp_path):
    """The check is not vacuous: the same package with a test output off by 0.05 is rejected."""
    from fosgate.core.export_model import validate_bioimageio

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "test_output.npy":
                out = tmp_path / "o.npy"
                np.save(out, np.load(_extract(src, item, tmp_path)) + 0.05)
                data = out.read_bytes()
            dst.writestr(item, data)
    report = validate_bioimageio(bad, "keras_v3")
    assert report["status"] != "passed"
    assert any("Reproduce test outputs" in d[0] for d in _failed(report))


def _extract(zf: zipfile.ZipFile, item: zipfile.ZipInfo, folder: Path) -> Path:
    return Path(zf.extract(item, folder / "x"))


@needs_export_extra
def test_test_output_is_fosgates_own_prediction(package, reference_dir, tmp_path):
    """The test output is what fosgate's per-image normalisation + one pass give (not bioimageio.core's)."""
    import keras

    from fosgate.core.normalize import Normalization

    with zipfile.ZipFile(package) as zf:
        raw = np.load(_extract(zf, zf.getinfo("test_input.npy"), tmp_path))
        out = np.load(_extract(zf, zf.getinfo("test_output.npy"), tmp_path))
    network = keras.models.load_model(reference_dir / "model.keras", compile=False)
    norm = Normalization()
    lo, hi = norm.stats_of_array(raw[0])
    expected = network.predict_on_batch(Normalization.apply(raw[0], lo, hi, 1.5)[None])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert raw.shape[1] % 16 == 0 and raw.shape[-1] == 1 and out.shape == raw.shape


@needs_export_extra
def test_tiled_bioimageio_prediction_matches_one_pass_inside_the_border(package, tmp_path, monkeypatch):
    """bioimageio.core tiling with the declared halo reproduces the one-pass output away from the image
    border (at the border consumers may pad differently from fosgate's zeros)."""
    from bioimageio.core import create_prediction_pipeline, predict
    from bioimageio.spec import load_model_description

    monkeypatch.chdir(tmp_path)  # bioimageio.core unpacks SavedModel weights into the working folder

    descr = load_model_description(package)
    rdf = _rdf(package)
    halo = rdf["outputs"][0]["axes"][1]["halo"]
    raw = np.load(_package_file(package, "test_input.npy"))
    full = np.load(_package_file(package, "test_output.npy"))
    pipeline = create_prediction_pipeline(descr, weight_format="keras_v3")
    block = 2 * halo + 32
    tiled = predict(model=pipeline, inputs=raw, input_block_shape={"raw": {"y": block, "x": block}})
    got = np.asarray(tiled.members["maps"].data)
    assert got.shape == full.shape
    inner = (slice(None), slice(halo, -halo), slice(halo, -halo))
    np.testing.assert_allclose(got[inner], full[inner], atol=2e-5)


def _package_file(package: Path, name: str) -> Path:
    target = package.parent / f"{package.stem}-{name}"
    if not target.exists():
        with zipfile.ZipFile(package) as zf:
            target.write_bytes(zf.read(name))
    return target


def test_keras_export_reloads_and_reproduces_predictions(reference_dir, tmp_path):
    import keras

    from fosgate.core.export_model import export_model

    zpath = export_model(reference_dir, tmp_path, "keras")
    assert zpath.name == "cfos-v3-md_export0001.keras.zip"
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path / "k")
    info = json.loads((tmp_path / "k" / "fosgate-model.json").read_text())
    assert info["threshold"] == pytest.approx(0.42) and info["halo_px"] == 96 and info["outputs"] == ["foreground"]
    assert info["normalization"]["mode"] == "percentile" and info["pixel_size_um"] == 0.0
    x = np.random.default_rng(1).random((1, 64, 80, 1), dtype=np.float32)
    original = keras.models.load_model(reference_dir / "model.keras", compile=False).predict_on_batch(x)
    reloaded = keras.models.load_model(tmp_path / "k" / "model.keras", compile=False).predict_on_batch(x)
    np.testing.assert_array_equal(reloaded, original)


def test_savedmodel_export_reproduces_predictions(reference_dir, tmp_path):
    import keras
    import tensorflow as tf

    from fosgate.core.export_model import export_model

    zpath = export_model(reference_dir, tmp_path, "savedmodel")
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path / "s")
    loaded = tf.saved_model.load(str(tmp_path / "s" / "savedmodel"))
    x = np.random.default_rng(2).random((2, 48, 64, 1), dtype=np.float32)
    got = loaded.serve(tf.constant(x))["maps"].numpy()
    want = keras.models.load_model(reference_dir / "model.keras", compile=False).predict_on_batch(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert "serving_default" in loaded.signatures
    assert json.loads((tmp_path / "s" / "fosgate-model.json").read_text())["in_channels"] == 1


@needs_export_extra
def test_rgb_two_output_model_is_described_channel_by_channel(tmp_path):
    """N output channels named from meta (format 2 keys: outputs, halo, pixel size, postprocess) and joint RGB
    normalisation; the package still passes test_model."""
    import keras
    from keras import layers

    from fosgate.core.export_model import export_model, validate_bioimageio

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.UpSampling2D(2)(x)
    out = layers.Conv2D(2, 1, activation="sigmoid")(x)
    model_dir = _save(tmp_path / "md2", keras.Model(inp, out), in_channels=3, receptive_field=8)
    meta = json.loads((model_dir / "meta.json").read_text())
    meta.update(outputs=["foreground", "centre"], halo=16, pixel_size_um=0.65,
                postprocess={"threshold": 0.6, "seed_threshold": 0.5, "min_size_px": 12, "split_touching": False})
    (model_dir / "meta.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(3)
    image = (rng.random((300, 290, 3)) * [200, 20, 10]).astype(np.uint8)
    package = export_model(model_dir, tmp_path / "out", "bioimageio", test_image=image)
    rdf = _rdf(package)
    axes = rdf["outputs"][0]["axes"]
    assert axes[-1]["channel_names"] == ["foreground", "centre"]
    assert [a["halo"] for a in axes[1:3]] == [16, 16] and axes[1]["scale"] == 0.65 and axes[1]["unit"] == "micrometer"
    assert rdf["inputs"][0]["preprocessing"][0]["kwargs"]["axes"] == ["y", "x", "channel"]  # joint RGB
    assert rdf["config"]["fosgate"]["threshold"] == 0.6
    raw = np.load(_package_file(package, "test_input.npy"))
    assert raw.shape == (1, 288, 288, 3)  # cropped to valid sizes (min 48, step 16)
    np.testing.assert_array_equal(raw[0], image[:288, :288].astype(np.float32))
    report = validate_bioimageio(package, "keras_v3")
    assert report["status"] == "passed", _failed(report)


def test_export_refuses_unknown_format_and_missing_model(tmp_path, reference_dir):
    from fosgate.core.export_model import export_model
    from fosgate.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput, match="bioimageio, keras, savedmodel"):
        export_model(reference_dir, tmp_path, "onnx")
    with pytest.raises(NotFound, match="missing"):
        export_model(tmp_path / "nothing", tmp_path, "keras")


@needs_export_extra
def test_export_model_job_over_the_server(server, client, tmp_path):
    """ExportModel RPC -> job -> artifact streamed to the client -> the zip passes test_model; the test input
    is a region of the model's own training slide."""
    import tifffile

    from fosgate.core.export_model import validate_bioimageio
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.unet import build_unet
    from fosgate.store.db import ModelRow

    image = generate_cfos(320, 352, seed=5)[0]
    tifffile.imwrite(tmp_path / "slide.tif", image)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:30] = 255
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    slide = client.upload_slide(tmp_path / "slide.tif")
    mask_slide = client.upload_slide(tmp_path / "mask.tif", role="mask")
    label = client.add_label(slide.slide_id, mask_slide.slide_id, region=(200, 250, 64, 64))

    store = server.app.store
    model_dir = _save(store.model_dir("md_served00001"), build_unet(1, seed=0), model_id="md_served00001",
                      label_ids=[label.label_id])
    meta = json.loads((model_dir / "meta.json").read_text())
    store.add_model(ModelRow("md_served00001", "cfos", 3, str(model_dir), meta, "2026-01-01T00:00:00Z", ""))

    job = client.wait(client.export_model("md_served00001", "bioimageio", ["A. Biologist"]).job_id)
    assert job.kind == "export_model" and job.result_id == "md_served00001"
    assert [a.name for a in job.artifacts] == ["cfos-v3-md_served00001.bioimageio.zip"]
    (path,) = client.download_outputs(job, tmp_path / "dl")
    raw = np.load(_package_file(path, "test_input.npy"))
    assert raw.shape == (1, 256, 256, 1)  # centred on the label (232, 282), clamped to the 320 x 352 slide
    np.testing.assert_array_equal(raw[0, ..., 0], image[64:320, 96:352].astype(np.float32))
    report = validate_bioimageio(path, "tensorflow_saved_model_bundle")
    assert report["status"] == "passed", _failed(report)

    job = client.wait(client.export_model("md_served00001", "keras").job_id)
    assert job.artifacts[0].name.endswith(".keras.zip")
    from fosgate_client.client import FosgateClientError

    with pytest.raises(FosgateClientError, match="Unknown export format"):
        client.export_model("md_served00001", "pickle")
    with pytest.raises(FosgateClientError) as err:
        client.export_model("md_nope", "keras")
    assert err.value.code.name == "NOT_FOUND"


def test_cli_export_model(server, untrained_model, tmp_path, capsys):
    from fosgate.cli import main

    rc = main(["export-model", untrained_model, "--format", "savedmodel", "--server", f"127.0.0.1:{server.port}",
               "--out", str(tmp_path), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["format"] == "savedmodel" and Path(printed["path"]).is_file()
    with zipfile.ZipFile(printed["path"]) as zf:
        assert "savedmodel/saved_model.pb" in zf.namelist()


@needs_export_extra
def test_an_ensemble_exports_as_one_network_and_passes_test_model(tmp_path):
    """A seed ensemble (fosgate.core.ensemble: members averaged in one Keras model) packages like any model:
    every weight format reproduces fosgate's own prediction of the test image."""
    import keras
    from keras import layers

    from fosgate.core.ensemble import average_network
    from fosgate.core.export_model import export_model, validate_bioimageio

    def tiny(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((None, None, 1))
        x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
        return keras.Model(inp, layers.Conv2D(2, 1, activation="sigmoid")(x))

    model_dir = _save(tmp_path / "ens", average_network([tiny(0), tiny(1)]), receptive_field=2,
                      metrics={"members": 2.0})
    image = (np.random.default_rng(4).random((96, 96)) * 200).astype(np.uint8)
    package = export_model(model_dir, tmp_path / "out", "bioimageio", test_image=image)
    report = validate_bioimageio(package)
    assert report["status"] == "passed", _failed(report)
