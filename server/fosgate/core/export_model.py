"""Export a saved fosgate model so that it can leave the server: bioimage.io package, Keras, SavedModel.

Input is a model directory as written by ``fosgate.core.modelio`` (``model.keras`` + ``meta.json``);
only the files and the meta keys are read, so the exporter works for every meta format: format 1
(``threshold``, ``receptive_field``) and format 2 (``outputs``, ``halo``, ``pixel_size_um``,
``postprocess``). Every export is one zip file:

- ``bioimageio``: a bioimage.io model package (``rdf.yaml``, format 0.5) with the weight formats
  ``keras_v3`` (the ``model.keras`` file itself, for bioimageio.core), ``tensorflow_saved_model_bundle``
  (for deepImageJ / QuPath / bioimageio.core) and, when tf2onnx is installed (the ``export`` extra), ``onnx``
  (for deepImageJ / QuPath / bioimageio.core via ONNX Runtime), a test input and the test output fosgate
  computes for it (``.npy``), a cover picture and a README.
- ``keras``: ``model.keras`` + ``fosgate-model.json`` (:func:`usage`) + README.
- ``savedmodel``: the TF SavedModel folder (Keras ``ExportArchive``; endpoint ``serve``: ``raw`` ->
  ``{"maps": ...}``) + the same JSON + README.

Invariants
- The bioimage.io test output is fosgate's own computation on the test input: per-image percentile
  normalisation (:meth:`Normalization.stats_of_array`, the rule fosgate applies to a whole slide) and one
  network pass. A consumer that follows ``rdf.yaml`` (``scale_range`` + ``clip``) reproduces it, which
  is what ``bioimageio.core``'s ``test_model`` checks.
- Each output's ``halo`` is the model's halo (its measured receptive field rounded up to the pooling grid):
  a consumer that tiles with at least that context and crops it gets the same maps as one pass (away from
  the image border, where padding rules differ; see docs/model-export.md).
- Only the model directory is read; nothing in it is changed. The zip appears complete or not at all
  (written as ``.part`` and renamed).
- The network is not changed: outputs are the sigmoid maps, channels named from ``meta.json``; the
  threshold and the instance step are documented, not baked in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fosgate.core.normalize import Normalization
from fosgate.errors import InvalidInput, NotFound, invalid_input_on_error

FORMATS = ("bioimageio", "keras", "savedmodel")
RDF_FORMAT_VERSION = "0.5.12"  # the bioimage.io model format written (bioimageio.spec 0.5.12.0 validates it)
ALIGN = 16  # the U-Net's pooling grid: input sizes are multiples of this
ONNX_OPSET = 17
TEST_SIZE = 256  # smallest side of the test input (grown when the halo needs more)
INPUT_ID = "raw"
OUTPUT_ID = "maps"
CITE = [
    {"text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
             "MICCAI 2015.", "doi": "10.1007/978-3-319-24574-4_28"},
]
OUTPUT_TEXT = {
    "foreground": "probability that the pixel belongs to a c-fos positive cell",
    "centre": "centre map: 1 at a cell's centre, falling to 0 at its border (watershed seeds)",
}
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelFiles:
    """A model directory read without loading TensorFlow: the network file and the meta dict."""

    directory: Path
    meta: dict[str, Any]

    @property
    def keras_path(self) -> Path:
        return self.directory / "model.keras"


def read_model_dir(directory: str | Path) -> ModelFiles:
    """The files of a saved model; NotFound/InvalidInput with a plain sentence when they are not there."""
    directory = Path(directory)
    if not (directory / "model.keras").is_file() or not (directory / "meta.json").is_file():
        raise NotFound(f"The model files at '{directory.name}' are missing.")
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"The description of model '{directory.name}' cannot be read ({exc}).") from None
    return ModelFiles(directory, meta)


def usage(meta: dict[str, Any], n_outputs: int | None = None) -> dict[str, Any]:
    """What a consumer of the bare network needs: normalisation, output channels, threshold, pixel size, halo.

    Reads format 1 and format 2 meta keys; ``n_outputs`` (the network's output channels) names the
    channels when the meta does not."""
    from fosgate.core.unet import required_halo

    norm = Normalization.from_json(meta.get("normalization") or "")
    post = dict(meta.get("postprocess") or {})
    threshold = float(post.get("threshold", meta.get("threshold", 0.5)))
    post.setdefault("threshold", threshold)
    post.setdefault("min_size_px", 10)
    outputs = list(meta.get("outputs") or [])
    n = n_outputs or len(outputs) or 1
    names = [outputs[i] if i < len(outputs) else ("foreground" if i == 0 else f"map{i}") for i in range(n)]
    rf = int(meta.get("receptive_field") or 0)
    halo = int(meta.get("halo") or required_halo(rf))
    in_channels = int(meta.get("in_channels") or 1)
    return {
        "fosgate_model_id": meta.get("model_id", ""), "name": meta.get("name", ""), "version": meta.get("version", 0),
        "arch": meta.get("arch", "reference"), "in_channels": in_channels,
        "input_layout": "(batch, y, x, channel) float32, y and x multiples of 16",
        "normalization": {**json.loads(norm.to_json()), "joint_channels": norm.joint(in_channels),
                          "rule": _norm_rule(norm, in_channels)},
        "outputs": names, "output_layout": f"(batch, y, x, {n}) float32 sigmoid maps in [0, 1]",
        "postprocess": post, "threshold": threshold, "pixel_size_um": float(meta.get("pixel_size_um") or 0.0),
        "receptive_field_px": rf, "halo_px": halo, "train_tile_size": meta.get("train_tile_size", 0),
        "metrics": meta.get("metrics", {}), "fosgate_version": meta.get("fosgate_version", ""),
    }


def _norm_rule(norm: Normalization, channels: int) -> str:
    if norm.mode == "range":
        return (f"x_norm = clip(x / dtype_max, 0, {norm.clip_max:g}) with dtype_max = 255 for 8-bit, "
                "65535 for 16-bit images")
    over = "over all channels at once" if norm.joint(channels) else "per channel"
    return (f"x_norm = clip((x - p{norm.low:g}) / (p{norm.high:g} - p{norm.low:g}), 0, {norm.clip_max:g}) with the "
            f"percentiles taken {over} over the whole slide (fosgate reads a strided overview of at most "
            "4 megapixels); p_high is raised to p_low + 1 on a flat image")


# ---------------------------------------------------------------------------------------------- exports


def export_model(model_dir: str | Path, out_dir: str | Path, fmt: str, *, test_image: np.ndarray | None = None,
                 authors: list[str] | None = None, stem: str = "", progress: Progress | None = None) -> Path:
    """Write ``<stem>.<fmt>.zip`` into ``out_dir`` and return its path (see the module docstring).

    ``test_image``: ``(h, w)`` or ``(h, w, C)`` raw pixels for the bioimage.io test input (a synthetic
    c-fos-like image when None); it is cropped to a size the network accepts."""
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    files = read_model_dir(model_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or _default_stem(files.meta)
    target = out_dir / f"{stem}.{fmt}.zip"
    say = progress or (lambda f, m: None)
    with tempfile.TemporaryDirectory(prefix="fosgate-export-", dir=out_dir) as tmp:
        work = Path(tmp) / "package"
        work.mkdir()
        if fmt == "bioimageio":
            _bioimageio_folder(files, work, test_image=test_image, authors=authors or [], say=say)
        else:
            _plain_folder(files, work, fmt, say=say)
        say(0.95, "Packing the zip file.")
        part = target.with_name(target.name + ".part")
        _zip_folder(work, part)
        os.replace(part, target)
    say(1.0, f"Wrote {target.name}.")
    return target


def _default_stem(meta: dict[str, Any]) -> str:
    from fosgate.names import safe_name

    return safe_name(f"{meta.get('name') or 'model'}-v{meta.get('version') or 0}-{meta.get('model_id') or ''}"
                     .rstrip("-"), default="model")


def _load_network(files: ModelFiles):
    import keras

    with invalid_input_on_error(lambda why: f"The model at '{files.directory.name}' cannot be loaded ({why})."):
        return keras.models.load_model(files.keras_path, compile=False)


def _n_outputs(network) -> int:
    return int(network.output_shape[-1])


def _export_savedmodel(network, folder: Path) -> None:
    """A TF SavedModel whose endpoint ``serve`` (also the ``serving_default`` signature) takes ``raw``
    ``(batch, y, x, C)`` float32 and returns ``{"maps": (batch, y, x, K)}``: named like the bioimage.io
    tensors, because signature-based consumers (bioimageio.core's TF2 adapter, Java runners) look them
    up by name and expect a dict."""
    import keras
    import tensorflow as tf

    channels = int(network.input_shape[-1])
    archive = keras.export.ExportArchive()
    archive.track(network)

    def serve(raw):
        return {OUTPUT_ID: network(raw, training=False)}

    archive.add_endpoint(name="serve", fn=serve,
                         input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32, name=INPUT_ID)])
    archive.write_out(str(folder), verbose=False)


def _export_onnx(network, path: Path) -> int | None:
    """ONNX weights (input ``raw``, output ``maps``) via tf2onnx, or None when tf2onnx is not installed
    (it comes with the ``export`` extra). Returns the opset."""
    try:
        import tf2onnx
    except ImportError:
        return None
    import contextlib
    import io

    import tensorflow as tf

    spec = (tf.TensorSpec((None, None, None, int(network.input_shape[-1])), tf.float32, name=INPUT_ID),)

    @tf.function(input_signature=spec)
    def serve(raw):
        return {OUTPUT_ID: network(raw, training=False)}

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET, output_path=str(path))
    return ONNX_OPSET


def _plain_folder(files: ModelFiles, work: Path, fmt: str, say: Progress) -> None:
    say(0.1, "Loading the model.")
    network = _load_network(files)
    info = usage(files.meta, _n_outputs(network))
    if fmt == "keras":
        shutil.copy2(files.keras_path, work / "model.keras")
    else:
        say(0.3, "Writing the TensorFlow SavedModel.")
        _export_savedmodel(network, work / "savedmodel")
    (work / "fosgate-model.json").write_text(json.dumps(info, indent=2))
    (work / "README.md").write_text(_plain_readme(info, fmt))


def _plain_readme(info: dict[str, Any], fmt: str) -> str:
    load = ("model = keras.models.load_model('model.keras', compile=False)\n"
            "maps = model.predict(x_norm[None])[0]" if fmt == "keras" else
            "model = tf.saved_model.load('savedmodel')\n"
            "maps = model.serve(tf.constant(x_norm[None]))['maps'].numpy()[0]")
    return f"""# fosgate model {info['name']} v{info['version']} ({info['fosgate_model_id']})

Exported by fosgate {info['fosgate_version'] or ''} as `{fmt}`. `fosgate-model.json` holds everything needed
to use the bare network the way fosgate does.

1. Input: {info['input_layout']}, {info['in_channels']} channel(s).
2. Normalise: {info['normalization']['rule']}.
3. Run: ```{load}```; pad the image with zeros at the bottom/right to a multiple of 16 (as fosgate does).
   Output: {info['output_layout']}, channels {', '.join(info['outputs'])}.
4. Tiles: give each tile {info['halo_px']} px of context on every side and crop it from the output
   (the receptive field is {info['receptive_field_px']} px); then tiles stitch exactly.
5. Cells: foreground >= {info['threshold']:g} (calibrated at training), connected components, objects
   under {info['postprocess'].get('min_size_px', 10)} px dropped. Pixel size at training:
   {info['pixel_size_um'] or 'unknown'} µm.
"""


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())


# ---------------------------------------------------------------------------------------------- bioimage.io


def _valid_size(n: int, minimum: int) -> int:
    """The smallest ``minimum + k * ALIGN`` (k >= 0) that is >= n."""
    return minimum + max(0, -(-(n - minimum) // ALIGN)) * ALIGN


def make_test_input(image: np.ndarray | None, in_channels: int, halo: int) -> np.ndarray:
    """``(1, h, w, C)`` float32 raw pixels for the package's test: ``image`` cropped (top-left) to the
    largest accepted size, or a synthetic c-fos-like image; both sides >= TEST_SIZE and valid sizes."""
    minimum = 2 * halo + ALIGN
    if image is None:
        from fosgate.core.synthetic import generate_cfos

        side = _valid_size(TEST_SIZE, minimum)
        grey = generate_cfos(side, side, seed=0)[0].astype(np.float32)
        image = np.stack([grey] + [grey * 0.1] * (in_channels - 1), axis=-1)
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] != in_channels:
        raise InvalidInput(f"The test image has {image.shape[-1]} channel(s) but the model takes {in_channels}.")
    h, w = image.shape[:2]
    if h < minimum or w < minimum:
        raise InvalidInput(f"The test image is {w}x{h} px; this model needs at least {minimum}x{minimum} px "
                           f"(twice its {halo}-px halo plus 16).")
    ch = minimum + (h - minimum) // ALIGN * ALIGN
    cw = minimum + (w - minimum) // ALIGN * ALIGN
    ch, cw = min(ch, _valid_size(512, minimum)), min(cw, _valid_size(512, minimum))  # keep the package small
    return np.ascontiguousarray(image[:ch, :cw], dtype=np.float32)[None]


def reference_output(network, raw: np.ndarray, norm: Normalization) -> np.ndarray:
    """What fosgate computes for a ``(1, h, w, C)`` raw image: per-image normalisation, one pass."""
    lo, hi = norm.stats_of_array(raw[0])
    x = Normalization.apply(raw[0], lo, hi, norm.clip_max)
    return np.asarray(network.predict_on_batch(x[None]), dtype=np.float32)


def _preprocessing(norm: Normalization, channels: int) -> list[dict[str, Any]]:
    if norm.mode == "range":  # test data are float32 copies of 8-bit images: the reference recipe's / 255
        scale = [{"id": "scale_linear", "kwargs": {"gain": 1.0 / 255.0, "offset": 0.0}}]
    else:
        axes = ["y", "x", "channel"] if norm.joint(channels) else ["y", "x"]
        scale = [{"id": "scale_range", "kwargs": {"axes": axes, "min_percentile": norm.low,
                                                   "max_percentile": norm.high, "eps": 1e-6}}]
    return scale + [{"id": "clip", "kwargs": {"min": 0.0, "max": float(norm.clip_max)}}]


def _cover(raw: np.ndarray, out: np.ndarray, path: Path) -> None:
    """A 2:1 picture: the (normalised) test input beside its first output map."""
    from PIL import Image

    def grey(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, (1, 99.8))
        return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    left = grey(raw[0].mean(axis=-1))
    right = (np.clip(out[0, ..., 0], 0, 1) * 255).astype(np.uint8)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def _bioimageio_folder(files: ModelFiles, work: Path, *, test_image: np.ndarray | None, authors: list[str],
                       say: Progress) -> None:
    import keras
    import tensorflow as tf

    say(0.05, "Loading the model.")
    network = _load_network(files)
    meta = files.meta
    info = usage(meta, _n_outputs(network))
    norm = Normalization.from_json(meta.get("normalization") or "")
    channels, halo = info["in_channels"], info["halo_px"]
    say(0.15, "Computing the test output.")
    raw = make_test_input(test_image, channels, halo)
    out = reference_output(network, raw, norm)
    np.save(work / "test_input.npy", raw)
    np.save(work / "test_output.npy", out)
    _cover(raw, out, work / "cover.png")
    say(0.35, "Writing the weights (Keras and TensorFlow SavedModel).")
    shutil.copy2(files.keras_path, work / "model.keras")
    sm = work / "savedmodel"
    _export_savedmodel(network, sm)
    shutil.make_archive(str(work / "tf_saved_model"), "zip", sm)
    shutil.rmtree(sm)
    say(0.6, "Writing the ONNX weights.")
    opset = _export_onnx(network, work / "model.onnx")
    if opset is None:
        say(0.6, "No ONNX weights: tf2onnx is not installed here (the 'export' extra); the package has the "
                 "Keras and TensorFlow weights.")
    (work / "fosgate-model.json").write_text(json.dumps(info, indent=2))
    (work / "README.md").write_text(_bioimageio_readme(info))
    rdf = model_rdf(info, norm, halo=halo, keras_version=keras.__version__, tf_version=tf.__version__,
                    authors=authors, onnx_opset=opset)
    _write_yaml(rdf, work / "rdf.yaml")


def _space_unit(info: dict[str, Any]) -> dict[str, Any]:
    px = info["pixel_size_um"]
    return {"unit": "micrometer", "scale": float(px)} if px > 0 else {}


def model_rdf(info: dict[str, Any], norm: Normalization, *, halo: int, keras_version: str, tf_version: str,
              authors: list[str], onnx_opset: int | None = None) -> dict[str, Any]:
    """The ``rdf.yaml`` dict (bioimage.io model format :data:`RDF_FORMAT_VERSION`) for the files
    :func:`_bioimageio_folder` writes (``model.onnx`` only when ``onnx_opset`` is given)."""
    weights: dict[str, Any] = {
        "keras_v3": {"source": "model.keras", "keras_version": keras_version, "backend": ["tensorflow", tf_version]},
        "tensorflow_saved_model_bundle": {
            "source": "tf_saved_model.zip", "tensorflow_version": tf_version, "parent": "keras_v3",
            "comment": "keras ExportArchive: endpoint 'serve' = signature 'serving_default', raw -> {maps}"},
    }
    if onnx_opset:
        weights["onnx"] = {"source": "model.onnx", "opset_version": onnx_opset, "parent": "keras_v3",
                           "comment": "tf2onnx from the Keras network: input raw, output maps"}
    channels = info["in_channels"]
    channel_names = ["grey"] if channels == 1 else (["red", "green", "blue"] if channels == 3
                                                   else [f"c{i}" for i in range(channels)])
    minimum = 2 * halo + ALIGN
    unit = _space_unit(info)
    in_axes = [{"type": "batch"}]
    in_axes += [{"type": "space", "id": a, "size": {"min": minimum, "step": ALIGN}, **unit} for a in ("y", "x")]
    in_axes += [{"type": "channel", "channel_names": channel_names}]
    out_axes = [{"type": "batch"}]
    out_axes += [{"type": "space", "id": a, "size": {"tensor_id": INPUT_ID, "axis_id": a}, "halo": halo, **unit}
                 for a in ("y", "x")]
    out_axes += [{"type": "channel", "channel_names": info["outputs"]}]
    name = f"fosgate c-fos U-Net {info['name']} v{info['version']}"
    return {
        "format_version": RDF_FORMAT_VERSION, "type": "model", "name": name[:128],
        "description": (f"U-Net that segments c-fos positive cells in brain-slice images, trained with fosgate on "
                        f"the lab's own labels (model {info['fosgate_model_id']}). Outputs sigmoid maps; "
                        f"cells are foreground >= {info['threshold']:g}."),
        "authors": [{"name": a} for a in authors] or [{"name": "fosgate user"}],
        "packaged_by": [{"name": "fosgate export-model"}],
        "cite": CITE, "license": "MIT", "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "tags": ["c-fos", "cell-segmentation", "unet", "2d", "fluorescence-light-microscopy", "brain", "tensorflow",
                 "keras", "fosgate"] + (["onnx"] if onnx_opset else []),
        "attachments": [{"source": "fosgate-model.json"}],
        "inputs": [{
            "id": INPUT_ID, "axes": in_axes, "test_tensor": {"source": "test_input.npy"},
            "data": {"type": "float32"},
            "description": _short(f"Raw pixels, {channels} channel(s); fosgate normalises per slide, this package "
                                  "per image (README)"),
            "preprocessing": _preprocessing(norm, channels),
        }],
        "outputs": [{
            "id": OUTPUT_ID, "axes": out_axes, "test_tensor": {"source": "test_output.npy"},
            "data": {"type": "float32", "range": [0.0, 1.0]},
            "description": _short(f"Sigmoid maps ({', '.join(info['outputs'])}); cells: channel 0 >= "
                                  f"{info['threshold']:g}, halo {halo} px (README)"),
        }],
        "weights": weights,
        "config": {"fosgate": info},
    }


def _short(text: str, limit: int = 128) -> str:
    """A tensor description fits the format's 128 characters (the README says the rest)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _write_yaml(data: dict[str, Any], path: Path) -> None:
    """Plain YAML without anchors/aliases (a list used twice is written twice), for simple Java readers."""
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    path.write_text(yaml.dump(data, Dumper=NoAliases, sort_keys=False, allow_unicode=True, width=110))


def _bioimageio_readme(info: dict[str, Any]) -> str:
    norm = info["normalization"]
    return f"""# fosgate c-fos U-Net {info['name']} v{info['version']} ({info['fosgate_model_id']})

A U-Net trained with fosgate on a lab's own labels to find c-fos positive cells in brain-slice images.

## Input
`raw`: {info['input_layout']}, {info['in_channels']} channel(s), raw pixel values as float32.
Pixel size at training: {info['pixel_size_um'] or 'unknown'} µm.

## Normalisation (pre-processing)
- fosgate: {norm['rule']}.
- this package (`rdf.yaml`): `scale_range` with the same percentiles ({norm['low']:g} / {norm['high']:g}) taken
  per *image* (per tile when a consumer tiles), then `clip` to [0, {norm['clip_max']:g}].
- Where they differ: fosgate's percentiles come from the whole slide, so every tile of a slide is scaled the
  same way. A consumer that normalises each tile on its own scales a dim tile up, and results then depend on
  the tiling. For results equal to fosgate's, run the whole image at once, or normalise the slide yourself
  with the rule above and feed the already-normalised image (then percentiles of 0/100 on it change nothing
  only if it is already in [0, {norm['clip_max']:g}]).
- fosgate pads with zeros at the bottom/right to a multiple of 16; other tools may pad by reflection, which
  changes a border band as wide as the halo.

## Output
`maps`: {info['output_layout']}.
{chr(10).join(f"- channel {i} `{n}`: {OUTPUT_TEXT.get(n, 'a sigmoid map')}" for i, n in enumerate(info['outputs']))}

## Post-processing (not in the package; documented)
Cells are pixels with foreground >= **{info['threshold']:g}** (the threshold fosgate calibrated on the
validation tiles at training), 4-connected components, objects smaller than
{info['postprocess'].get('min_size_px', 10)} px dropped{', touching cells split by a watershed'
if info['postprocess'].get('split_touching') else ''}. In Fiji: Image › Adjust › Threshold at
{info['threshold']:g}, then Analyze › Analyze Particles. In QuPath: a pixel classifier threshold.

## Tiling
Halo {info['halo_px']} px (receptive field {info['receptive_field_px']} px, rounded up to 16): each tile needs
that much context on every side, cropped from the output, for results equal to one pass over the image.

## Files
`model.keras` (Keras 3), `tf_saved_model.zip` (TensorFlow SavedModel, endpoint `serve`), `model.onnx` (ONNX,
when the exporting server had tf2onnx), `test_input.npy`, `test_output.npy` (fosgate's output for the test
input), `fosgate-model.json` (all of the above as JSON).

Validation scores at training: {json.dumps(info['metrics'])}.
"""


# ---------------------------------------------------------------------------------------------- checking


def validate_bioimageio(package: str | Path, weight_format: str | None = None) -> dict[str, Any]:
    """Run ``bioimageio.core.test_model`` on a package (needs the ``export`` extra): the spec is valid and
    the test input reproduces the test output through ``weight_format`` (all formats when None).
    Returns ``{"status": "passed"|"valid-format"|"failed", "details": [(check, status, [errors])]}``.

    bioimageio.core unpacks SavedModel weights into ``./bioimageio_unzipped_tf_weights``; the check runs
    in a temporary working folder so nothing is left behind (it changes the process's working folder
    meanwhile: call it from a command or a test, not from a server thread).

    bioimageio.core's Keras adapter writes ``KERAS_BACKEND`` into the process environment when imported
    (its default: torch), which every later child process (Dask workers, the demo's and the tests'
    subprocesses) would inherit and run Keras on torch. The check pins it to the running Keras backend
    and restores the environment afterwards."""
    import contextlib

    import keras

    package = Path(package).resolve()
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = keras.backend.backend()
    try:
        try:
            from bioimageio.core import test_model
        except ImportError:
            raise InvalidInput("Checking a bioimage.io package needs bioimageio.core "
                               "(pip install 'fosgate[export]').") from None
        with tempfile.TemporaryDirectory(prefix="fosgate-bioimageio-") as tmp, contextlib.chdir(tmp):
            summary = test_model(str(package), weight_format=weight_format)
    finally:
        if before is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = before
    details = [(d.name, d.status, [f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in d.errors])
               for d in summary.details]
    return {"status": summary.status, "details": details, "format_version": summary.format_version}
