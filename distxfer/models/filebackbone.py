"""A team's own Keras 3 model as the backbone: loaded from its `.keras` file, cut at one layer.

    model:
      backbone: models/our_detector.keras
      backbone_layer: block5_out        # its output is the feature map; the head goes on top
      weights: null                     # the file's own weights (or a run / weights file)

The file is loaded with Keras's safe mode on, so a Lambda layer (arbitrary Python code) is
refused unless `model.safe_mode` is false. The cut model takes the file's input: it gets the raw
pixels, 0..255, as uint8 if its input is uint8 and as float32 otherwise, so its preprocessing is
whatever layers it holds. Its layer dtypes are those saved in the file (mixed precision does not
recast them). Phases, `top:N`, `from:LAYER` and BatchNorm in inference mode work on it as on a
keras.applications backbone (see `distxfer.models.phases`).
"""

from __future__ import annotations

import keras

from distxfer.config.schema import ModelConfig
from distxfer.errors import ConfigError, one_line
from distxfer.models import keras_internals
from distxfer.models.backbones import BackboneSpec
from distxfer.models.kerasfile import check_backbone_file


def load_file_backbone(
    spec: BackboneSpec, model_cfg: ModelConfig, input_shape: tuple[int, int, int]
) -> keras.Model:
    """The model in `spec.path` from its input to `model.backbone_layer`, named "backbone"."""
    path, name = str(spec.path), str(model_cfg.backbone_layer)
    check_backbone_file(path, name, safe_mode=model_cfg.safe_mode)
    try:
        loaded = keras.saving.load_model(path, compile=False, safe_mode=model_cfg.safe_mode)
    except Exception as exc:  # Keras raises many kinds for a file it cannot rebuild
        raise ConfigError(
            f"model.backbone: {path} does not load with Keras {keras.__version__}"
            f" ({one_line(exc)}); custom layers must be registered"
            " (keras.saving.register_keras_serializable) and imported first"
        ) from None
    if not isinstance(loaded, keras.Model) or len(loaded.inputs) != 1:
        raise ConfigError(f"model.backbone: {path} must be a model with one image input")
    try:
        features = keras_internals.output_where_called(loaded.get_layer(name))
    except (AttributeError, ValueError) as exc:
        raise ConfigError(
            f"model.backbone_layer: {name} in {path} has no single output ({one_line(exc)});"
            " cut at a layer the model calls once"
        ) from None
    if len(features.shape) != 4:
        raise ConfigError(
            f"model.backbone_layer: {name} in {path} outputs shape {tuple(features.shape)}, not"
            " a feature map [batch, height, width, channels]; cut before the pooling"
        )
    _check_input(path, tuple(loaded.inputs[0].shape[1:]), input_shape)
    return keras.Model(loaded.inputs[0], features, name="backbone")


def _check_input(path: str, takes: tuple, given: tuple[int, int, int]) -> None:
    if len(takes) != 3 or takes[2] != given[2]:
        raise ConfigError(
            f"model.backbone: {path} takes inputs of shape {takes}, not images of"
            f" {given[2]} channel(s); set data.color_mode to match it"
        )
    if any(want is not None and want != have for want, have in zip(takes[:2], given[:2])):
        raise ConfigError(
            f"data.image_size: {list(given[:2])} does not fit {path}, which takes"
            f" {takes[0]}x{takes[1]} images; set data.image_size: [{takes[0]}, {takes[1]}]"
            " (or null)"
        )
