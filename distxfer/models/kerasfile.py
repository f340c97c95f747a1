"""A `.keras` model file's architecture, read without Keras: its input, layers and Lambda layers.

A `.keras` file is a zip holding `config.json` (the architecture), `metadata.json` and the
weights. Reading the JSON alone lets a config with `model.backbone: path/to/model.keras` be
checked before TensorFlow starts: that the file is a model, that `model.backbone_layer` is one
of its top-level layers, that it holds no Lambda layer (arbitrary Python code, which Keras's
safe mode refuses) unless `model.safe_mode` is false, and which image size it takes when
`data.image_size` is null. Pure Python: no TensorFlow or Keras import here.
"""

from __future__ import annotations

import difflib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distxfer.errors import ConfigError


@dataclass(frozen=True)
class KerasFileInfo:
    """What `config.json` of a `.keras` file says about the model."""

    path: str
    layers: tuple[str, ...]  # top-level layer names, in order
    input_shape: tuple[int | None, ...] | None  # without the batch axis; None if unknown
    lambda_layers: tuple[str, ...]  # names of Lambda layers, nested ones included

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) when the model takes one fixed size, else None."""
        shape = self.input_shape
        if shape is None or len(shape) != 3 or shape[0] is None or shape[1] is None:
            return None
        return int(shape[0]), int(shape[1])


def read_keras_file(path: str | Path) -> KerasFileInfo:
    """The architecture of the `.keras` file at `path`; a ConfigError on `model.backbone` when it
    is missing or is not a Keras 3 model file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.backbone: {path} does not exist; give the path of a Keras 3 .keras model"
            " (model.save('model.keras')), or a keras.applications name"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"model.backbone: {path} is not a Keras 3 .keras model file ({exc}); save the model"
            " with model.save('model.keras') (Keras 3)"
        ) from None
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ConfigError(
            f"model.backbone: {path} holds a {config.get('class_name', 'non-model')} object, not"
            " a Functional or Sequential model whose layers can be cut"
        )
    names = tuple(_layer_name(layer) for layer in layers)
    return KerasFileInfo(str(path), names, _input_shape(layers), tuple(_lambda_layers(config)))


def check_backbone_file(path: str, layer: str | None, *, safe_mode: bool) -> KerasFileInfo:
    """The file's architecture, once `layer` is known to be one of its layers and safe mode would
    load it; a ConfigError naming the key otherwise."""
    info = read_keras_file(path)
    if layer not in info.layers:
        close = difflib.get_close_matches(str(layer), info.layers, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        shown = ", ".join(info.layers[-8:])
        raise ConfigError(
            f"model.backbone_layer: {path} has no top-level layer {layer!r}; {hint}its last"
            f" layers are {shown}"
        )
    if info.lambda_layers and safe_mode:
        raise ConfigError(
            f"model.backbone: {path} holds Lambda layer(s) {', '.join(info.lambda_layers)},"
            " which run arbitrary Python code, so Keras's safe mode refuses to load them; if you"
            " trust the file, set model.safe_mode: false"
        )
    return info


def _layer_name(layer: Any) -> str:
    if isinstance(layer, dict):
        name = layer.get("name") or layer.get("config", {}).get("name")
        if name:
            return str(name)
    return ""


def _input_shape(layers: list[Any]) -> tuple[int | None, ...] | None:
    for layer in layers:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            shape = layer.get("config", {}).get("batch_shape")
            if isinstance(shape, list) and shape:
                return tuple(None if v is None else int(v) for v in shape[1:])
    return None


def _lambda_layers(node: Any) -> Iterator[str]:
    """Names of every Lambda layer in a (nested) serialized config."""
    if isinstance(node, dict):
        if node.get("class_name") == "Lambda":
            yield _layer_name(node) or "lambda"
            return
        for value in node.values():
            yield from _lambda_layers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _lambda_layers(value)
