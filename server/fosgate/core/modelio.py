"""Saving and loading a versioned model: ``model.keras`` (Keras 3 format) + ``meta.json``.

Invariant: a model directory is complete or absent. Files are written into a temporary sibling
directory, fsynced, and renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fosgate.errors import NotFound, invalid_input_on_error


@dataclass
class ModelMeta:
    model_id: str
    name: str
    version: int
    created: float
    in_channels: int
    normalization: str  # JSON of fosgate.core.normalize.Normalization
    receptive_field: int
    train_tile_size: int
    metrics: dict[str, float] = field(default_factory=dict)
    label_ids: list[str] = field(default_factory=list)
    parent_model_id: str = ""
    fosgate_version: str = ""
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    threshold: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def save_model(model, meta: ModelMeta, directory: Path) -> Path:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.keras")
    with open(tmp / "meta.json", "w") as fh:
        json.dump(meta.to_dict(), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def load_model(directory: str | Path):
    """(keras model, ModelMeta) from a model directory."""
    import keras

    directory = Path(directory)
    if not (directory / "model.keras").is_file():
        raise NotFound(f"The model files at '{directory.name}' are missing.")
    with invalid_input_on_error(lambda why: f"The model at '{directory.name}' cannot be loaded ({why})."):
        meta = ModelMeta.from_dict(json.loads((directory / "meta.json").read_text()))
        model = keras.models.load_model(directory / "model.keras", compile=False)
    return model, meta
