"""``FosgateModel``: one object for a trained network and everything needed to use it.

A model is the Keras network plus its architecture name, input channels, input normalisation, the
pixel size it was trained at, its measured receptive field (and so the halo that makes stitching
exact), its calibrated post-processing and its provenance. Prediction goes through it:
:meth:`FosgateModel.predict_slide` (a whole slide, written to files, memory bounded) and
:meth:`FosgateModel.predict_instances` (an in-memory image, e.g. for benchmarks), which share the
window prediction, the encoding of stitched maps and the instance step.

Save format (a directory; complete or absent, written to ``<dir>.part`` and renamed):

- ``model.keras``: the Keras 3 network (``keras.saving``), input ``(batch, H, W, in_channels)``
  float32 normalised as ``normalization`` says, H and W multiples of 16; output
  ``(batch, H, W, K)`` sigmoid maps, channels named by ``outputs`` in ``meta.json``
  (``["foreground"]`` for ``reference``, ``["foreground", "centre"]`` for ``unet2``).
- ``meta.json``: ``format_version`` (2), ``arch``, ``outputs``, ``in_channels``,
  ``normalization`` (JSON text of ``fosgate.core.normalize.Normalization``), ``pixel_size_um``
  (micrometres per pixel the network was trained at; 0 = unknown), ``receptive_field`` (px),
  ``halo`` (px), ``postprocess`` (the fields of :class:`PostProcess`), and the provenance keys
  ``model_id``, ``name``, ``version``, ``created`` (ISO 8601), ``train_tile_size``, ``metrics``
  (validation scores, training settings), ``label_ids``, ``parent_model_id``, ``fosgate_version``,
  ``filters``, ``threshold`` (= ``postprocess.threshold``, for readers of format 1).

Format 1 directories (``meta.json`` without ``format_version``/``arch``, written before this module)
load as ``arch="reference"`` with ``postprocess.threshold`` = their ``threshold``, min size 10 px,
unknown pixel size: their predictions do not change.

Invariants
- ``encode_core`` is the only place stitched maps become stored values: channel 0 is
  ``foreground >= threshold`` (0/1), channel 1 (``unet2``) the centre map as ``round(255 * c)``.
  Every backend (in process, Dask workers) hands the pipeline these same bytes for a window core.
- ``predict_instances`` runs the same instance step (``fosgate.core.instances.label_mask``) as a
  whole-slide prediction, on in-memory arrays.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from fosgate.core.normalize import Normalization
from fosgate.errors import NotFound, Precondition, invalid_input_on_error

FORMAT_VERSION = 2
CENTRE_SCALE = 255.0


@dataclass(frozen=True)
class PostProcess:
    """How stitched maps become instances. ``threshold``: foreground probability; ``seed_threshold``:
    centre-map level of the watershed seeds (``unet2``); ``min_size_px``: smallest object in pixels at the
    model's pixel size (``min_area_um2`` = the same in µm² when the pixel size is known);
    ``split_touching``: the distance-transform watershed of the foreground (the reference net's); for
    ``unet2`` it replaces the centre-seeded watershed (calibration chooses between the two)."""

    threshold: float = 0.5
    seed_threshold: float = 0.5
    min_size_px: int = 10
    split_touching: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> PostProcess:
        """From a ``meta.json`` or proto map (values may all be floats): unknown keys are ignored, each value
        is converted to its field's type (``min_size_px`` int, ``split_touching`` bool)."""
        kinds = {f.name: type(f.default) for f in fields(cls)}
        return cls(**{k: kinds[k](v) for k, v in (d or {}).items() if k in kinds})

    def describe(self, arch: str = "unet2") -> str:
        """One line for people: threshold, split rule, min size."""
        split = ("touching cells split by the distance transform" if self.split_touching else
                 f"seed level {self.seed_threshold:g}" if arch != "reference" else "no split")
        return f"threshold {self.threshold:g}, {split}, min size {int(self.min_size_px)} px"


@dataclass(frozen=True)
class PredictOptions:
    """Per-request settings of a whole-slide prediction; ``None``/0 means the model's own.

    ``tile``/``halo``: window plan (0: from the memory budget / the receptive field); ``region``:
    (x, y, width, height) in slide pixels; ``tta``: average of the eight square symmetries;
    ``pixel_size_um``: the slide's pixel size when its metadata lacks it or is wrong;
    ``threshold``/``seed_threshold``/``min_size_px``/``min_area_um2``/``split_touching``: post-processing
    overrides (``min_area_um2`` wins over ``min_size_px``)."""

    tile: int | tuple[int, int] = 0
    halo: int = 0
    region: tuple[int, int, int, int] | None = None
    memory_budget: float = 1.5e9
    tta: bool = False
    pixel_size_um: float = 0.0
    threshold: float | None = None
    seed_threshold: float | None = None
    min_size_px: int | None = None
    min_area_um2: float | None = None
    split_touching: bool | None = None


def encode_core(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Stored values of a window core's maps ``(h, w)`` or ``(h, w, K)``: uint8 ``(h, w, K)`` with
    channel 0 = ``foreground >= threshold`` and channel 1 = ``round(255 * centre)`` (module docstring)."""
    p = prob if prob.ndim == 3 else prob[..., None]
    out = np.empty(p.shape, np.uint8)
    out[..., 0] = p[..., 0] >= threshold
    if p.shape[-1] > 1:
        out[..., 1:] = np.rint(np.clip(p[..., 1:], 0, 1) * CENTRE_SCALE)
    return out


@dataclass
class FosgateModel:
    """A trained network with its normalisation, pixel size, receptive field, post-processing and
    provenance (see the module docstring for the save format)."""

    network: Any  # keras.Model
    arch: str
    in_channels: int
    normalization: Normalization
    receptive_field: int
    pixel_size_um: float = 0.0  # µm per pixel at training; 0 = unknown
    post: PostProcess = field(default_factory=PostProcess)
    model_id: str = ""
    name: str = ""
    version: int = 0
    created: str = ""  # ISO 8601 time of saving (the store's format)
    train_tile_size: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    label_ids: list[str] = field(default_factory=list)
    parent_model_id: str = ""
    fosgate_version: str = ""
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    directory: str = ""  # where it was loaded from / saved to ("" = in memory only)
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch training curve

    # ---------------------------------------------------------------- construction, save and load
    @classmethod
    def create(cls, arch: str, in_channels: int, normalization: Normalization, *, seed: int | None = None,
               pixel_size_um: float = 0.0, **provenance) -> FosgateModel:
        """A new, untrained model of architecture ``arch`` with its receptive field measured."""
        from fosgate.core.unet import build_model, receptive_field_radius

        net = build_model(arch, in_channels, seed=seed)
        return cls(net, arch, in_channels, normalization, int(receptive_field_radius(net)),
                   pixel_size_um=float(pixel_size_um or 0.0), **provenance)

    @property
    def outputs(self) -> tuple[str, ...]:
        from fosgate.core.unet import OUTPUT_NAMES

        return OUTPUT_NAMES[self.arch]

    @property
    def halo(self) -> int:
        """The smallest 16-multiple halo covering the receptive field: stitching is then exact."""
        from fosgate.core.unet import required_halo

        return required_halo(self.receptive_field)

    @property
    def min_area_um2(self) -> float:
        """The post-processing min size in µm² (0 when the pixel size is unknown)."""
        return self.post.min_size_px * self.pixel_size_um ** 2

    def meta_dict(self) -> dict:
        """``meta.json`` (module docstring); also what the store keeps for listings."""
        return {
            "format_version": FORMAT_VERSION, "arch": self.arch, "outputs": list(self.outputs),
            "in_channels": self.in_channels, "normalization": self.normalization.to_json(),
            "pixel_size_um": float(self.pixel_size_um), "receptive_field": int(self.receptive_field),
            "halo": int(self.halo), "postprocess": asdict(self.post),
            "model_id": self.model_id, "name": self.name, "version": int(self.version), "created": self.created,
            "train_tile_size": int(self.train_tile_size), "metrics": dict(self.metrics),
            "label_ids": list(self.label_ids), "parent_model_id": self.parent_model_id,
            "fosgate_version": self.fosgate_version, "filters": list(self.filters),
            "threshold": float(self.post.threshold),
        }

    def save(self, directory: str | Path) -> Path:
        """Write the model directory atomically (a crash never leaves a half-written model)."""
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.network.save(tmp / "model.keras")
        with open(tmp / "meta.json", "w") as fh:
            json.dump(self.meta_dict(), fh, indent=2)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
        self.directory = str(directory)
        return directory

    @classmethod
    def from_meta(cls, network, meta: dict, directory: str = "") -> FosgateModel:
        """A model from a network and a ``meta.json`` dict of format 2 or 1 (module docstring)."""
        if "arch" in meta:
            post = PostProcess.from_dict(meta.get("postprocess"))
        else:  # format 1: the reference net, its calibrated threshold, min size 10 px
            post = PostProcess(threshold=float(meta.get("threshold", 0.5)))
        return cls(
            network=network, arch=meta.get("arch", "reference"), in_channels=int(meta["in_channels"]),
            normalization=Normalization.from_json(meta.get("normalization", "")),
            receptive_field=int(meta["receptive_field"]), pixel_size_um=float(meta.get("pixel_size_um") or 0.0),
            post=post, model_id=meta.get("model_id", ""), name=meta.get("name", ""),
            version=int(meta.get("version", 0)), created=str(meta.get("created", "")),
            train_tile_size=int(meta.get("train_tile_size", 0)), metrics=dict(meta.get("metrics") or {}),
            label_ids=list(meta.get("label_ids") or []), parent_model_id=meta.get("parent_model_id", ""),
            fosgate_version=meta.get("fosgate_version", ""), filters=list(meta.get("filters") or [16, 32, 64, 128, 256]),
            directory=directory)

    @classmethod
    def load(cls, directory: str | Path) -> FosgateModel:
        """Load a model directory (format 2, or format 1 as ``reference``); NotFound / InvalidInput."""
        import keras

        directory = Path(directory)
        if not (directory / "model.keras").is_file():
            raise NotFound(f"The model files at '{directory.name}' are missing.")
        with invalid_input_on_error(lambda why: f"The model at '{directory.name}' cannot be loaded ({why})."):
            meta = json.loads((directory / "meta.json").read_text())
            network = keras.models.load_model(directory / "model.keras", compile=False)
            return cls.from_meta(network, meta, str(directory))

    def with_post(self, **changes) -> FosgateModel:
        """The same model with some post-processing fields changed."""
        return replace(self, post=replace(self.post, **changes))

    # ---------------------------------------------------------------- prediction
    def resolve_post(self, options: PredictOptions, slide_pixel_um: float = 0.0) -> PostProcess:
        """The post-processing for one request: the model's own with the request's overrides; the min
        size is converted to the slide's pixels when both pixel sizes are known (µm² are what count)."""
        post = self.post
        changes: dict[str, Any] = {}
        for name in ("threshold", "seed_threshold", "split_touching"):
            v = getattr(options, name)
            if v is not None:
                changes[name] = v
        px = slide_pixel_um or 0.0
        if options.min_area_um2 is not None and px > 0:
            changes["min_size_px"] = max(1, int(round(options.min_area_um2 / px ** 2)))
        elif options.min_size_px is not None:
            changes["min_size_px"] = int(options.min_size_px)
        elif px > 0 and self.pixel_size_um > 0:
            changes["min_size_px"] = max(1, int(round(self.min_area_um2 / px ** 2)))
        return replace(post, **changes)

    @property
    def is_pretrained_only(self) -> bool:
        """:func:`pretrained_only` of this model: its output head was never trained."""
        return pretrained_only({"metrics": self.metrics, "label_ids": self.label_ids})

    def predict_maps(self, image: np.ndarray, *, tta: bool = False, tile: int = 0) -> np.ndarray:
        """``(h, w, K)`` maps of an in-memory *normalised* ``(h, w, C)`` image: one pass, or stitched
        windows of core ``tile`` (the same values, see ``fosgate.core.predict``)."""
        from fosgate.core.predict import predict_array, predict_single_pass

        if tile:
            out = predict_array(self.network, image, tile=tile, halo=self.halo, tta=tta)
        else:
            out = predict_single_pass(self.network, image, tta=tta)
        return out if out.ndim == 3 else out[..., None]

    def instances_from_maps(self, maps: np.ndarray, post: PostProcess | None = None,
                            image: np.ndarray | None = None) -> np.ndarray:
        """uint32 instance labels from ``(h, w, K)`` float maps, as whole-slide prediction makes them."""
        post = post or self.post
        enc = encode_core(maps, post.threshold)
        return instances_from_encoded(enc, post, image)

    def predict_image_maps(self, image: np.ndarray, *, pixel_size_um: float = 0.0, tta: bool = False,
                           lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """``(h, w, K)`` maps of an in-memory raw ``(h, w)`` or ``(h, w, C)`` image at the image's own pixels:
        normalised with its own statistics (or ``lo``/``hi``), predicted at the model's pixel size when both
        pixel sizes are known and differ, and brought back. :meth:`predict_instances` post-processes exactly
        these maps, so a caller may post-process them several ways without predicting again."""
        from fosgate.core.rescale import resample_image, resample_maps, scale_factor

        img = image if image.ndim == 3 else image[..., None]
        if lo is None or hi is None:
            lo, hi = self.normalization.stats_of_array(img)
        x = Normalization.apply(img, lo, hi, self.normalization.clip_max)
        f = scale_factor(pixel_size_um, self.pixel_size_um)
        if f != 1.0:  # predict at the model's scale, maps back at the image's own pixels
            return resample_maps(self.predict_maps(resample_image(x, f), tta=tta), x.shape[:2], f)
        return self.predict_maps(x, tta=tta)

    def predict_instances(self, image: np.ndarray, *, pixel_size_um: float = 0.0, tta: bool = False,
                          lo: np.ndarray | None = None, hi: np.ndarray | None = None,
                          **post_overrides) -> np.ndarray:
        """Instance labels (uint32, the image's own size) of an in-memory raw ``(h, w)`` or ``(h, w, C)``
        image: :meth:`predict_image_maps` post-processed with the model's post-processing and
        ``post_overrides`` (fields of :class:`PredictOptions`: threshold, seed_threshold, min_size_px,
        min_area_um2, split_touching; a min size is converted to the image's pixels, :meth:`resolve_post`)."""
        post = self.resolve_post(PredictOptions(**post_overrides), pixel_size_um)  # bad overrides fail first
        maps = self.predict_image_maps(image, pixel_size_um=pixel_size_um, tta=tta, lo=lo, hi=hi)
        return self.instances_from_maps(maps, post, image if image.ndim == 3 else image[..., None])

    def predict_slide(self, slide, out_dir: str | Path, stem: str, options: PredictOptions | None = None, *,
                      backend=None, progress=None, should_cancel=None):
        """Predict a whole open slide and write the six outputs (``fosgate.core.pipeline.predict_slide``)."""
        from fosgate.core.pipeline import predict_slide

        return predict_slide(slide, self, out_dir=Path(out_dir), stem=stem, options=options or PredictOptions(),
                             backend=backend, progress=progress, should_cancel=should_cancel)


def instances_from_encoded(enc: np.ndarray, post: PostProcess, image: np.ndarray | None = None) -> np.ndarray:
    """Instances of in-memory encoded maps (``encode_core``) with ``label_mask``, as the pipeline does."""
    from fosgate.core.instances import label_mask

    labels = np.zeros(enc.shape[:2], np.uint32)
    reader = None
    if image is not None:
        def reader(y0, y1, x0, x1):
            return image[y0:y1, x0:x1]
    centre = enc[..., 1] if enc.shape[-1] > 1 else None
    label_mask(enc[..., 0], labels, min_size=post.min_size_px, split_touching=post.split_touching,
               image_reader=reader, centre=centre, seed_threshold=post.seed_threshold, centre_scale=CENTRE_SCALE)
    return labels


def load_model(directory: str | Path) -> FosgateModel:
    """``FosgateModel.load``."""
    return FosgateModel.load(directory)


def pretrained_only(meta: dict) -> bool:
    """Whether a stored model's ``meta.json`` is that of a model pretrained without labels
    (``metrics["pretrained"]`` = 1, no ``label_ids``) and never fine-tuned: its output head was never
    trained, so its maps mean nothing. Fine-tuning (``train_model`` with it as base) writes fresh metrics
    and the labels it learnt from, so the fine-tuned model is an ordinary one."""
    return bool((meta.get("metrics") or {}).get("pretrained")) and not meta.get("label_ids")


def check_segments(meta: dict, model_id: str) -> None:
    """Precondition (FAILED_PRECONDITION) with the command to run when ``meta`` is that of a
    :func:`pretrained_only` model: such a model must never silently produce cells."""
    if pretrained_only(meta):
        raise Precondition(f"Model '{model_id}' was pretrained without labels and cannot segment cells yet; "
                           f"fine-tune it first: fosgate train --base-model {model_id} --images DIR --masks DIR "
                           "(or --all-labels).")
