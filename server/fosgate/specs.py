"""Typed, frozen job specifications: one class per job kind, each owning its defaults and its bounds.

A request travels proto -> spec (built once, in the servicer, with :meth:`JobSpec.create`) -> the
submission checks that need the store (ids exist, the region lies inside the slide) -> the job row
(``to_json``) -> the task (the same frozen object). Nothing downstream reads a parameter with a
fallback: the spec already holds the value the job will use.

Invariants
- Every default lives here and only here; the proto comments state the same numbers
  (tests/test_specs.py compares them) and the CLI and the Python client send 0 / unset to mean
  "the server's default".
- ``create(**fields)``: a field given as 0, 0.0, "" or None takes the spec's default (proto3
  cannot tell 0 from unset), except where a class says otherwise (``margin`` 0 is meaningful when
  a tile size is given).
- ``validate()`` raises :class:`~fosgate.errors.InvalidInput` (INVALID_ARGUMENT) with a sentence
  naming the parameter and the allowed range for every value a job cannot use: negative, NaN,
  infinite, too large, a total amount of work no server finishes, a text field over its cap. It
  needs no store and no gRPC, so it is unit-tested directly.
- ``from_json(to_json(spec)) == spec``; unknown keys in stored JSON are ignored (rows written by
  older versions still load).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from fosgate.core.pretrain import PretrainConfig
from fosgate.errors import InvalidInput
from fosgate.names import MAX_NAME_CHARS, check_stem

Region = tuple[int, int, int, int]

#: caps on client-given text (ids are short server-made strings; names and reviewers are for people)
MAX_ID_CHARS = 64
MAX_REVIEWER_CHARS = 200
MAX_IDS = 100_000
#: one job's regions (auto-label tiles)
MAX_REGIONS = 10_000
MAX_REGION_PIXELS = 4096 * 4096
#: training: a total amount of work a server can finish (epochs x steps per epoch)
MAX_EPOCHS = 10_000
MAX_STEPS_PER_EPOCH = 10_000
MAX_TRAIN_STEPS = 1_000_000
IMAGE_FORMATS = ("png", "tif")
AUTOLABEL_METHODS = ("classical", "sam", "model")
PROPOSAL_STATES = ("", "pending", "accepted", "rejected", "replaced")


# ---------------------------------------------------------------------- checks shared by the specs
def check_text(value: str, what: str, max_chars: int, *, printable: bool = True) -> str:
    """``value`` if it fits ``max_chars`` characters (and holds no control characters), else InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text.")
    if len(value) > max_chars:
        raise InvalidInput(f"{what} is {len(value):,} characters long; use at most {max_chars}.")
    if printable and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"{what} contains control characters (line breaks, tabs, NUL); use plain text.")
    return value


def check_id(value: str, what: str) -> str:
    """A server-made id as a client sends it back: short printable text ('' allowed: the caller decides)."""
    return check_text(value, f"The {what} id", MAX_ID_CHARS)


def check_int(value: Any, what: str, lo: int, hi: int, *, zero_ok: bool = False, multiple: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be a whole number (got {value!r}).")
    if zero_ok and value == 0:
        return value
    if not lo <= value <= hi or value % multiple:
        step = f" and a multiple of {multiple}" if multiple > 1 else ""
        zero = " (or 0 for the default)" if zero_ok else ""
        raise InvalidInput(f"{what} must be between {lo:,} and {hi:,}{step}{zero} (got {value:,}).")
    return value


def check_float(value: Any, what: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False,
                zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be a number (got {value!r}).")
    value = float(value)
    if zero_ok and value == 0.0:
        return value
    ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        zero = " (or 0 for the default)" if zero_ok else ""
        raise InvalidInput(f"{what} must be a number in {left}{lo:g}, {hi:g}{right}{zero} (got {value!r}).")
    return value


def check_region(region: Region | None, width: int, height: int, what: str = "region") -> None:
    """``region`` (x, y, w, h) must lie inside a ``width`` x ``height`` image; None = the whole image."""
    if region is None:
        return
    x, y, w, h = region
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise InvalidInput(f"The {what} {w}x{h} at ({x}, {y}) lies outside the {width}x{height} slide.")


def _check_region_shape(region: Region | None, what: str = "region") -> None:
    if region is None:
        return
    if len(region) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in region):
        raise InvalidInput(f"A {what} is four whole numbers: x, y, width, height.")
    if any(v < 0 for v in region) or region[2] == 0 or region[3] == 0:
        raise InvalidInput(f"A {what} cannot have negative coordinates or an empty size (got {list(region)}).")
    if any(v > 2**40 for v in region):
        raise InvalidInput(f"The {what} {list(region)} is larger than any slide.")


def crop_tile_count(height: int, width: int, tile: int, margin: int) -> int:
    """How many reference-style crops (``fosgate.core.tiling.plan_crop_tiles``) cover an image."""

    def axis(n: int) -> int:
        size = min(tile, n)
        step = tile - 2 * margin
        starts = len(range(0, max(n - size, 0) + 1, step))
        last = (starts - 1) * step
        return starts + (1 if last + size < n else 0)

    return axis(height) * axis(width)


def _region_arg(region: Any) -> Region | None:
    """A region from a list/tuple; (0, 0, 0, 0)-style empty sizes mean 'the whole slide' (None)."""
    if region is None:
        return None
    r = tuple(region)
    if len(r) == 4 and not r[2] and not r[3] and not r[0] and not r[1]:
        return None
    return r  # type: ignore[return-value]


_UNSET = (None, 0, 0.0, "")


def _is_unset(value: Any) -> bool:
    return value is None or (not isinstance(value, bool) and value in _UNSET) or value == () or value == []


# ---------------------------------------------------------------------- base
@dataclass(frozen=True)
class JobSpec:
    """Base of all job specs: construction from request fields, validation and JSON."""

    kind: ClassVar[str] = ""
    #: fields whose 0 / "" is a value, not "use the default"
    _zero_ok: ClassVar[tuple[str, ...]] = ()
    #: nested spec classes by field name
    _nested: ClassVar[dict[str, type]] = {}

    @classmethod
    def create(cls, **values: Any) -> Self:
        """A validated spec from request fields; 0 / "" / None / empty means the default."""
        return cls._build(values, cls._zero_ok)

    @classmethod
    def _build(cls, values: dict[str, Any], zero_ok: tuple[str, ...]) -> Self:
        kw: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            v = values[f.name]
            if f.name in cls._nested:
                v = v if isinstance(v, cls._nested[f.name]) else cls._nested[f.name].create(**(v or {}))
            elif _is_unset(v) and f.name not in zero_ok:
                continue
            kw[f.name] = _coerce(f.name, v)
        return cls(**kw).validate()

    def validate(self) -> Self:
        return self

    def to_json(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name in cls._nested:
                v = cls._nested[f.name].from_json(v or {})
            kw[f.name] = _coerce(f.name, v)
        return cls(**kw)


def _coerce(name: str, v: Any) -> Any:
    if name == "region":
        return _region_arg(v)
    if name == "regions":
        return tuple(tuple(r) for r in v)
    if isinstance(v, list):
        return tuple(v)
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _check_ids(ids: tuple[str, ...], what: str) -> None:
    if len(ids) > MAX_IDS:
        raise InvalidInput(f"Give at most {MAX_IDS:,} {what} ids in one request (got {len(ids):,}).")
    for i in ids:
        check_id(i, what)


# ---------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSpec(JobSpec):
    """Train (or fine-tune) a U-Net on stored labels. Empty ``label_ids``: every label
    (filled in at submission, so the job row records exactly what was trained on)."""

    kind: ClassVar[str] = "train"
    label_ids: tuple[str, ...] = ()
    epochs: int = 30
    tile_size: int = 256
    batch_size: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    name: str = "unet"
    learning_rate: float = 1e-3
    #: 0 = about two passes over the labelled pixels per epoch (25..400)
    steps_per_epoch: int = 0
    base_model_id: str = ""
    #: early stopping after this many epochs without improvement (0 = off)
    patience: int = 0
    #: "unet2" (instance-aware default) or "reference" (the paper's net); ignored when fine-tuning
    arch: str = "unet2"
    #: µm per pixel the model works at; 0 = the slides' own (metadata), else unknown
    pixel_size_um: float = 0.0
    #: networks in a seed ensemble (1: one network); each trains the whole schedule
    members: int = 1

    def validate(self) -> Self:
        from fosgate.core.ensemble import MAX_MEMBERS
        from fosgate.core.unet import ARCHS

        if self.arch not in ARCHS:
            raise InvalidInput(f"Unknown architecture '{self.arch[:40]}'; choose one of {', '.join(sorted(ARCHS))}.")
        check_float(self.pixel_size_um, "The pixel size (µm)", 0.0, 1000.0, lo_open=True, zero_ok=True)
        _check_ids(self.label_ids, "label")
        check_int(self.epochs, "epochs", 1, MAX_EPOCHS)
        check_int(self.tile_size, "The training tile size", 16, 1024, multiple=16)
        check_int(self.batch_size, "The batch size", 1, 1024)
        check_float(self.val_fraction, "The validation fraction", 0.0, 0.9, lo_open=True)
        check_int(self.seed, "The seed", 0, 2**31 - 1)
        check_text(self.name, "The model name", MAX_NAME_CHARS)
        if not self.name.strip():
            raise InvalidInput("The model name cannot be blank.")
        check_float(self.learning_rate, "The learning rate", 0.0, 1.0, lo_open=True)
        check_int(self.steps_per_epoch, "steps_per_epoch", 1, MAX_STEPS_PER_EPOCH, zero_ok=True)
        check_id(self.base_model_id, "base model")
        check_int(self.patience, "patience", 0, MAX_EPOCHS)
        check_int(self.members, "The number of networks in the ensemble", 1, MAX_MEMBERS)
        steps = self.epochs * (self.steps_per_epoch or 400) * self.members
        if steps > MAX_TRAIN_STEPS:
            networks = f" for each of {self.members} networks" if self.members > 1 else ""
            raise InvalidInput(f"{self.epochs:,} epochs of {self.steps_per_epoch or 'up to 400'} steps{networks} is "
                               f"{steps:,} training steps; this server runs at most {MAX_TRAIN_STEPS:,} per job. "
                               "Use fewer epochs, steps or networks (early stopping with patience ends sooner "
                               "anyway).")
        return self

    def train_config(self):
        """The core's ``TrainConfig`` with every field set from this spec (no core default is used)."""
        from fosgate.core.training import TrainConfig

        return TrainConfig(epochs=self.epochs, tile_size=self.tile_size, batch_size=self.batch_size,
                           val_fraction=self.val_fraction, seed=self.seed, learning_rate=self.learning_rate,
                           steps_per_epoch=self.steps_per_epoch or None, patience=self.patience, arch=self.arch,
                           pixel_size_um=self.pixel_size_um, members=self.members)


# ---------------------------------------------------------------------- self-supervised pretraining
#: slides one pretraining job samples from
MAX_PRETRAIN_SLIDES = 1000
#: the sampled tiles are held in memory as float32: tiles x tile_size² x channels x 4 bytes at most this
MAX_PRETRAIN_TILE_BYTES = 1 << 30


def pretrain_tile_bytes(tiles: int, tile_size: int, channels: int) -> int:
    """Memory the sampled unlabelled tiles of a pretraining job take (float32)."""
    return tiles * tile_size * tile_size * channels * 4


_PRETRAIN_NUMBERS: dict[str, type | tuple[type, ...]] = {
    "epochs": int, "steps_per_epoch": int, "batch_size": int, "tile_size": int, "patch_size": int, "tiles": int,
    "mask_ratio": (int, float), "learning_rate": (int, float)}


@dataclass(frozen=True)
class PretrainSpec(JobSpec):
    """Pretrain a U-Net without labels by masked image modelling (``fosgate.core.pretrain``) on unlabelled
    tiles sampled from image slides; the result is a model to fine-tune (``train --base-model``), not one
    that segments. The MIM fields (epochs .. seed) are exactly the core's ``PretrainConfig`` fields, whose
    defaults they take and whose ``validate`` owns their bounds."""

    kind: ClassVar[str] = "pretrain"
    slide_ids: tuple[str, ...] = ()
    #: "unet2" (default) or "reference": the network that fine-tuning will keep
    arch: str = "unet2"
    # the MIM settings: defaults are the core's PretrainConfig defaults (one place)
    epochs: int = PretrainConfig.epochs
    steps_per_epoch: int = PretrainConfig.steps_per_epoch
    batch_size: int = PretrainConfig.batch_size
    #: square unlabelled tiles, multiple of 16 (32..512)
    tile_size: int = PretrainConfig.tile_size
    #: side of the hidden squares; divides tile_size
    patch_size: int = PretrainConfig.patch_size
    #: fraction of each tile hidden (0.05..0.95)
    mask_ratio: float = PretrainConfig.mask_ratio
    #: "intensity" (bright squares, where nuclei are, hidden more often) or "random"
    masking: str = PretrainConfig.masking
    #: unlabelled tiles sampled from the slides (held in memory; 8..100000)
    tiles: int = PretrainConfig.tiles
    learning_rate: float = PretrainConfig.learning_rate
    seed: int = PretrainConfig.seed
    name: str = "pretrained"
    #: µm per pixel the model works at; 0 = the slides' own (median of those known), else unknown
    pixel_size_um: float = 0.0

    def validate(self) -> Self:
        from fosgate.core.unet import ARCHS

        if not self.slide_ids:
            raise InvalidInput("Say which slides to pretrain on (slide_ids): image slides of your own, no labels "
                               "needed.")
        if len(self.slide_ids) > MAX_PRETRAIN_SLIDES:
            raise InvalidInput(f"Pretrain on at most {MAX_PRETRAIN_SLIDES:,} slides per job (got "
                               f"{len(self.slide_ids):,}).")
        _check_ids(self.slide_ids, "slide")
        if len(set(self.slide_ids)) != len(self.slide_ids):
            twice = next(s for s in self.slide_ids if self.slide_ids.count(s) > 1)
            raise InvalidInput(f"Slide '{twice}' is listed more than once; give each slide once.")
        if self.arch not in ARCHS:
            raise InvalidInput(f"Unknown architecture '{self.arch[:40]}'; choose one of {', '.join(sorted(ARCHS))}.")
        for name, kind in _PRETRAIN_NUMBERS.items():  # types here; the ranges in PretrainConfig.validate
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise InvalidInput(f"{name} must be a {'whole ' if kind is int else ''}number (got {value!r}).")
        check_text(self.masking, "The masking", 40)
        check_int(self.seed, "The seed", 0, 2**31 - 1)
        self.pretrain_config().validate()  # the MIM bounds live in the core
        steps = self.epochs * self.steps_per_epoch
        if steps > MAX_TRAIN_STEPS:
            raise InvalidInput(f"{self.epochs:,} epochs of {self.steps_per_epoch:,} steps is {steps:,} pretraining "
                               f"steps; this server runs at most {MAX_TRAIN_STEPS:,} per job.")
        self.check_tile_memory(1)
        check_text(self.name, "The model name", MAX_NAME_CHARS)
        if not self.name.strip():
            raise InvalidInput("The model name cannot be blank.")
        check_float(self.pixel_size_um, "The pixel size (µm)", 0.0, 1000.0, lo_open=True, zero_ok=True)
        return self

    def check_tile_memory(self, channels: int) -> None:
        """InvalidInput when the sampled tiles of ``channels``-channel slides would exceed
        :data:`MAX_PRETRAIN_TILE_BYTES` (memory depends on tiles x tile size, never on the slides' size)."""
        need = pretrain_tile_bytes(self.tiles, self.tile_size, channels)
        if need > MAX_PRETRAIN_TILE_BYTES:
            raise InvalidInput(f"{self.tiles:,} tiles of {self.tile_size} x {self.tile_size} px"
                               f"{f' x {channels} channels' if channels > 1 else ''} take "
                               f"{need / 2**30:.1f} GiB; this server holds at most "
                               f"{MAX_PRETRAIN_TILE_BYTES / 2**30:g} GiB of pretraining tiles. Sample fewer or "
                               "smaller tiles.")

    def pretrain_config(self) -> PretrainConfig:
        """The core's ``PretrainConfig`` with every field taken from this spec."""
        return PretrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PretrainConfig)})


# ---------------------------------------------------------------------- prediction
REGION_MAP_KINDS = ("", "polygons", "labels")
_STAGED = re.compile(r"^regions/rg_[0-9a-f]+\.(geojson|zip|tif|png|names)$")


@dataclass(frozen=True)
class RegionMapSpec(JobSpec):
    """A region map already staged by the server (``fosgate.jobs.region_counts.stage_regions``): the paths are
    server-made names under ``<data>/regions/``, never a client's. ``kind`` "" means no map."""

    kind: str = ""
    path: str = ""
    names_path: str = ""
    label_slide_id: str = ""
    #: slide pixels per map pixel; 0 = inferred from the sizes
    scale: float = 0.0
    #: 0 = the slide's own pixel size
    pixel_size_um: float = 0.0

    def validate(self) -> Self:
        if self.kind not in REGION_MAP_KINDS:
            raise InvalidInput(f"Unknown region map kind '{self.kind}'.")
        for p in (self.path, self.names_path):
            if p and not _STAGED.match(p):
                raise InvalidInput("A region map's files are named by the server.")
        check_id(self.label_slide_id, "label-map slide")
        check_float(self.scale, "The region map's scale", 0.0, 1e6, zero_ok=True)
        check_float(self.pixel_size_um, "The pixel size", 0.0, 1e6, zero_ok=True)
        return self


@dataclass(frozen=True)
class PredictSpec(JobSpec):
    """Segment a slide (or a region of it) with a model."""

    kind: ClassVar[str] = "predict"
    slide_id: str = ""
    model_id: str = ""
    #: core tile, multiple of 16; 0 = chosen from the server's memory budget
    tile_size: int = 0
    #: context on each side; 0 = the model's receptive field
    halo: int = 0
    #: 0 = the model's own (calibrated at training, else 0.5)
    threshold: float = 0.0
    #: smallest object in slide pixels; 0 = the model's own (calibrated, converted by pixel size)
    min_size: int = 0
    #: True forces the distance-transform split (reference net); False = the model's own
    split_touching: bool = False
    region: Region | None = None
    #: output file stem; "" = the slide name without its extension
    stem: str = ""
    #: cells per brain region into <stem>.regions.csv when given (staged by the server)
    region_map: RegionMapSpec = field(default_factory=RegionMapSpec)
    _nested: ClassVar[dict[str, type]] = {"region_map": RegionMapSpec}
    #: test-time augmentation (mean over the 8 square symmetries; 8x the compute, exact stitching kept)
    tta: bool = False
    #: the slide's µm per pixel when its metadata lacks it; 0 = the metadata
    pixel_size_um: float = 0.0
    #: centre-map level of the watershed seeds (unet2); 0 = the model's own
    seed_threshold: float = 0.0
    #: smallest object in µm² (wins over min_size); 0 = unset
    min_area_um2: float = 0.0

    def predict_options(self, memory_budget: float):
        """The core's ``PredictOptions`` (0/False = the model's own post-processing)."""
        from fosgate.core.model import PredictOptions

        return PredictOptions(
            tile=self.tile_size, halo=self.halo, region=self.region, memory_budget=memory_budget, tta=self.tta,
            pixel_size_um=self.pixel_size_um, threshold=self.threshold or None,
            seed_threshold=self.seed_threshold or None, min_size_px=self.min_size or None,
            min_area_um2=self.min_area_um2 or None, split_touching=True if self.split_touching else None)

    def validate(self) -> Self:
        if not self.slide_id:
            raise InvalidInput("Say which slide to segment (slide_id).")
        if not self.model_id:
            raise InvalidInput("Say which model to use (model_id); list them with 'fosgate models'.")
        check_id(self.slide_id, "slide")
        check_id(self.model_id, "model")
        check_int(self.tile_size, "The tile size", 16, 8192, multiple=16, zero_ok=True)
        check_int(self.halo, "The halo", 0, 1024)
        check_float(self.threshold, "The threshold", 0.0, 1.0, lo_open=True, hi_open=True, zero_ok=True)
        check_int(self.min_size, "The smallest object size (min_size)", 1, 1_000_000_000, zero_ok=True)
        check_float(self.pixel_size_um, "The pixel size (µm)", 0.0, 1000.0, lo_open=True, zero_ok=True)
        check_float(self.seed_threshold, "The seed level", 0.0, 1.0, lo_open=True, hi_open=True, zero_ok=True)
        check_float(self.min_area_um2, "The smallest object area (µm²)", 0.0, 1e9, lo_open=True, zero_ok=True)
        _check_region_shape(self.region)
        check_stem(self.stem)
        return self


# ---------------------------------------------------------------------- tile export
@dataclass(frozen=True)
class ExportTilesSpec(JobSpec):
    """The reference "crop" step: overlapping tiles of a slide (or a region) as PNG/TIFF + tiles.csv."""

    kind: ClassVar[str] = "export_tiles"
    slide_id: str = ""
    tile_size: int = 128
    #: overlap on each side (step = tile_size - 2 * margin); 0 is a value when tile_size is given
    margin: int = 4
    format: str = "png"
    region: Region | None = None

    @classmethod
    def create(cls, **values: Any) -> Self:
        return cls._build(values, ("margin",) if values.get("tile_size") else ())

    def validate(self) -> Self:
        check_id(self.slide_id, "slide")
        if not self.slide_id:
            raise InvalidInput("Say which slide to cut into tiles (slide_id).")
        check_int(self.tile_size, "The tile size", 8, 4096)
        check_int(self.margin, "The margin", 0, 4096)
        if self.tile_size - 2 * self.margin < 1:
            raise InvalidInput(f"A {self.tile_size}-px tile with a {self.margin}-px margin leaves no step; use a "
                               "margin smaller than half the tile.")
        if self.format not in IMAGE_FORMATS:
            raise InvalidInput("Tiles are exported as 'png' or 'tif'.")
        _check_region_shape(self.region)
        return self


# ---------------------------------------------------------------------- labelling loop
@dataclass(frozen=True)
class ClusterSpec(JobSpec):
    """Cluster a slide's tiles: autoencoder codes + k-means, t-SNE picture."""

    kind: ClassVar[str] = "cluster"
    slide_id: str = ""
    tile_size: int = 128
    margin: int = 4
    k: int = 5
    seed: int = 0
    #: autoencoder epochs
    epochs: int = 10
    #: tiles used to train the autoencoder; all tiles are clustered
    max_tiles: int = 2000
    region: Region | None = None

    @classmethod
    def create(cls, **values: Any) -> Self:
        return cls._build(values, ("margin",) if values.get("tile_size") else ())

    def validate(self) -> Self:
        if not self.slide_id:
            raise InvalidInput("Say which slide's tiles to cluster (slide_id).")
        check_id(self.slide_id, "slide")
        check_int(self.tile_size, "The clustering tile size", 32, 512, multiple=8)
        check_int(self.margin, "The margin", 0, 512)
        if 2 * self.margin >= self.tile_size:
            raise InvalidInput("The margin must be smaller than half the tile.")
        check_int(self.k, "The number of clusters", 2, 50)
        check_int(self.seed, "The seed", 0, 2**31 - 1)
        check_int(self.epochs, "epochs", 1, 1000)
        check_int(self.max_tiles, "max_tiles", 1, 100_000)
        _check_region_shape(self.region)
        return self

    def check_against(self, width: int, height: int) -> None:
        """The region lies inside the slide and holds at least ``k`` tiles."""
        check_region(self.region, width, height)
        w, h = (self.region[2], self.region[3]) if self.region else (width, height)
        n = crop_tile_count(h, w, self.tile_size, self.margin)
        if n < self.k:
            raise InvalidInput(f"The {w}x{h} px area holds {n} tile(s) of {self.tile_size} px, fewer than the "
                               f"{self.k} clusters asked for; choose a larger region, smaller tiles or a smaller k.")


@dataclass(frozen=True)
class SamSpec(JobSpec):
    """Segment Anything's automatic mask generator settings and the filters applied to its masks."""

    points_per_side: int = 16
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.85
    min_area: int = 20
    max_area: int = 5000
    #: True: use the two thresholds above even when 0
    has_thresholds: bool = False

    @classmethod
    def create(cls, **values: Any) -> Self:
        if values.get("has_thresholds"):
            return cls._build(values, ("pred_iou_thresh", "stability_score_thresh"))
        values = {k: v for k, v in values.items() if k not in ("pred_iou_thresh", "stability_score_thresh")}
        return cls._build(values, ())

    def validate(self) -> Self:
        check_int(self.points_per_side, "SAM points per side", 1, 128)
        check_float(self.pred_iou_thresh, "The SAM predicted-IoU threshold", 0.0, 1.0)
        check_float(self.stability_score_thresh, "The SAM stability threshold", 0.0, 1.0)
        check_int(self.min_area, "The SAM smallest mask area", 0, MAX_REGION_PIXELS)
        check_int(self.max_area, "The SAM largest mask area", 1, MAX_REGION_PIXELS)
        if self.max_area < self.min_area:
            raise InvalidInput(f"The SAM largest mask area ({self.max_area}) is below the smallest ({self.min_area}).")
        return self

    def filter_json(self) -> dict[str, Any]:
        """The ``fosgate.core.sam.SamFilter`` fields."""
        return {"min_area": self.min_area, "max_area": self.max_area, "pred_iou_thresh": self.pred_iou_thresh,
                "stability_score_thresh": self.stability_score_thresh}


@dataclass(frozen=True)
class AutoLabelSpec(JobSpec):
    """Proposals (classical, SAM or a model) for tiles of a slide, stored for review."""

    kind: ClassVar[str] = "autolabel"
    _nested: ClassVar[dict[str, type]] = {"sam": SamSpec}
    slide_id: str = ""
    method: str = "classical"
    regions: tuple[Region, ...] = ()
    model_id: str = ""
    #: provenance only
    clustering_id: str = ""
    sam: SamSpec = field(default_factory=SamSpec)

    def validate(self) -> Self:
        if not self.slide_id:
            raise InvalidInput("Say which slide to label (slide_id).")
        check_id(self.slide_id, "slide")
        check_id(self.model_id, "model")
        check_id(self.clustering_id, "clustering")
        if self.method not in AUTOLABEL_METHODS:
            raise InvalidInput(f"Unknown auto-label method '{self.method}'; use classical, sam or model.")
        if not self.regions:
            raise InvalidInput("Give the tiles to label (regions), e.g. from 'fosgate select'.")
        if len(self.regions) > MAX_REGIONS:
            raise InvalidInput(f"Auto-label at most {MAX_REGIONS:,} tiles per job (got {len(self.regions):,}).")
        for r in self.regions:
            _check_region_shape(r, "tile")
            if r[2] * r[3] > MAX_REGION_PIXELS:
                raise InvalidInput("Auto-label tiles of at most 4096 x 4096 px; split larger regions.")
        if self.method == "model" and not self.model_id:
            raise InvalidInput("Model proposals need a model id.")
        self.sam.validate()
        return self


@dataclass(frozen=True)
class ExportProposalsSpec(JobSpec):
    """Everything a reviewer needs to judge proposals in Fiji or QuPath, in one zip."""

    kind: ClassVar[str] = "export_proposals"
    slide_id: str = ""
    state: str = ""
    job_id: str = ""
    #: filled in at submission: exactly the proposals that matched then
    proposal_ids: tuple[str, ...] = ()

    def validate(self) -> Self:
        check_id(self.slide_id, "slide")
        check_id(self.job_id, "job")
        if self.state not in PROPOSAL_STATES:
            raise InvalidInput(f"Unknown proposal state '{self.state}'.")
        _check_ids(self.proposal_ids, "proposal")
        return self


@dataclass(frozen=True)
class ExportDatasetSpec(JobSpec):
    """The labelled dataset (images/, masks/, labels.csv) as one zip. Empty ``label_ids``: all labels."""

    kind: ClassVar[str] = "export_dataset"
    label_ids: tuple[str, ...] = ()
    format: str = "png"

    def validate(self) -> Self:
        _check_ids(self.label_ids, "label")
        if self.format not in IMAGE_FORMATS:
            raise InvalidInput("Datasets are exported as 'png' or 'tif'.")
        return self


EXPORT_FORMATS = ("bioimageio", "keras", "savedmodel")
MAX_AUTHORS = 20


@dataclass(frozen=True)
class ExportModelSpec(JobSpec):
    """A stored model packaged as one zip (``fosgate.core.export_model``): bioimage.io, Keras or SavedModel."""

    kind: ClassVar[str] = "export_model"
    model_id: str = ""
    format: str = "bioimageio"
    authors: tuple[str, ...] = ()

    def validate(self) -> Self:
        check_id(self.model_id, "model")
        if not self.model_id:
            raise InvalidInput("Say which model to export (its id, e.g. md_3f9c2a1b7e04).")
        if self.format not in EXPORT_FORMATS:
            raise InvalidInput(f"Unknown export format '{self.format}'; choose one of {', '.join(EXPORT_FORMATS)}.")
        if len(self.authors) > MAX_AUTHORS:
            raise InvalidInput(f"Name at most {MAX_AUTHORS} authors.")
        for a in self.authors:
            check_text(a, "An author's name", MAX_REVIEWER_CHARS)
        return self


@dataclass(frozen=True)
class CountRegionsSpec(JobSpec):
    """Cells per region for a finished prediction job (its counts table), into ``<stem>.regions.csv``."""

    kind: ClassVar[str] = "count_regions"
    _nested: ClassVar[dict[str, type]] = {"region_map": RegionMapSpec}
    job_id: str = ""
    slide_id: str = ""
    region_map: RegionMapSpec = field(default_factory=RegionMapSpec)

    def validate(self) -> Self:
        check_id(self.job_id, "job")
        check_id(self.slide_id, "slide")
        if not self.job_id:
            raise InvalidInput("Say which prediction job's cells to count (job_id).")
        return self


SPECS: dict[str, type[JobSpec]] = {c.kind: c for c in (TrainSpec, PretrainSpec, PredictSpec, ExportTilesSpec,
                                                       ClusterSpec, AutoLabelSpec, ExportProposalsSpec,
                                                       ExportDatasetSpec, ExportModelSpec, CountRegionsSpec)}


def spec_from_job(kind: str, params: dict[str, Any]) -> JobSpec:
    """The spec stored in a job row."""
    cls = SPECS.get(kind)
    if cls is None:
        raise InvalidInput(f"Unknown job kind '{kind}'.")
    return cls.from_json(params)
