"""A trained classifier as files other programs load: a `.keras` file and a TF SavedModel; and
its backbone alone, to transfer from.

Both classifier exports take uint8 images [N,H,W,C] (0..255, preprocessing is inside) and return
float32 class probabilities. `export_backbone` writes `backbone.weights.h5` (the backbone's
weights, for `model.weights` in a config with the same backbone) and `backbone.keras` (uint8
images -> preprocessing -> the backbone's feature map, for `keras.models.load_model` anywhere, or
`model.backbone: backbone.keras` with `model.backbone_layer: backbone`). Each is written under a
temporary name and renamed into place, so the final path holds either the previous export or the
complete new one, never half a file. A JSON sidecar next to it (`model.keras` -> `model.json`,
`savedmodel/` -> `savedmodel.json`, `backbone.keras` -> `backbone.json`) records what a caller
needs: class names in output order, image size, channels and backbone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import keras

from distxfer import __version__
from distxfer.atomic import replacing, write_bytes
from distxfer.config.schema import Config
from distxfer.models.backbones import resolve_backbone
from distxfer.models.build import BACKBONE, feature_model, probability_model
from distxfer.models.weights import save_backbone_weights


def export_keras(
    model: keras.Model, path: str | Path, *, class_names: Sequence[str], config: Config
) -> Path:
    """Save the probability model as a `.keras` file that plain `keras.models.load_model` loads."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras export must end in .keras")
    prob = _prepared(model, class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".keras") as tmp:
        prob.save(tmp)
    write_sidecar(prob, path, class_names=class_names, config=config, fmt="keras")
    return path


def export_savedmodel(
    model: keras.Model, path: str | Path, *, class_names: Sequence[str], config: Config
) -> Path:
    """Save a TF SavedModel whose `serve` signature maps uint8 "images" [N,H,W,C] to
    {"probabilities": float32 [N,classes]} (TF Serving, `tf.saved_model.load`)."""
    path = Path(path)
    prob = _prepared(model, class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        _saved_model_archive(prob).write_out(str(tmp), verbose=False)
    write_sidecar(prob, path, class_names=class_names, config=config, fmt="savedmodel")
    return path


def export_backbone(model: keras.Model, directory: str | Path, *, config: Config) -> list[Path]:
    """Write `backbone.weights.h5`, `backbone.keras` and its `backbone.json` into `directory`."""
    features = feature_model(model)  # refuses the mlp, which has no backbone
    directory = Path(directory)
    weights = save_backbone_weights(model, directory / "backbone.weights.h5")
    path = directory / "backbone.keras"
    with replacing(path, suffix=".keras") as tmp:
        features.save(tmp)
    _, height, width, channels = features.inputs[0].shape
    info = {
        "format": "backbone",
        "file": path.name,
        "weights_file": weights.name,
        "image_size": [int(height), int(width)],
        "channels": int(channels),
        "input_dtype": "uint8",
        "input_range": [0, 255],
        "output": "feature map [N, height, width, channels]",
        "output_shape": [None if d is None else int(d) for d in features.outputs[0].shape[1:]],
        "backbone": resolve_backbone(config.model.backbone).name,
        "backbone_args": config.model.backbone_args,
        "use_as": {"model.backbone": path.name, "model.backbone_layer": BACKBONE},
        "distxfer_version": __version__,
    }
    side = sidecar_path(path)
    write_bytes(side, (json.dumps(info, indent=2) + "\n").encode())
    return [weights, path, side]


def sidecar_path(path: str | Path) -> Path:
    """Where the JSON description of the export at `path` is written."""
    return Path(path).with_suffix(".json")


def write_sidecar(
    model: keras.Model, path: Path, *, class_names: Sequence[str], config: Config, fmt: str
) -> Path:
    """Write the export's JSON description next to it, atomically; `config` is the run's."""
    _, height, width, channels = model.inputs[0].shape
    info = {
        "format": fmt,
        "file": path.name,
        "class_names": list(class_names),
        "image_size": [int(height), int(width)],
        "channels": int(channels),
        "color_mode": config.data.color_mode,
        "input_dtype": "uint8",
        "input_range": [0, 255],
        "output": "probabilities",
        "backbone": resolve_backbone(config.model.backbone).name,
        "distxfer_version": __version__,
    }
    side = sidecar_path(path)
    write_bytes(side, (json.dumps(info, indent=2) + "\n").encode())
    return side


def _saved_model_archive(prob: keras.Model) -> keras.export.ExportArchive:
    """`serve` (also the default signature): uint8 "images" -> {"probabilities": float32}."""
    archive = keras.export.ExportArchive()
    archive.track(prob)
    spec = keras.InputSpec(shape=(None, *prob.inputs[0].shape[1:]), dtype="uint8", name="images")
    archive.add_endpoint(
        "serve",
        lambda images: {"probabilities": prob(images, training=False)},
        input_signature=[spec],
    )
    return archive


def _prepared(model: keras.Model, class_names: Sequence[str]) -> keras.Model:
    prob = probability_model(model)
    outputs = prob.outputs[0].shape[-1]
    if outputs != len(class_names):
        raise ValueError(f"the model has {outputs} outputs but {len(class_names)} class names")
    return prob
