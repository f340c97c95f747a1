"""The classifier: uint8 pixels -> the backbone's preprocessing -> backbone -> new head -> logits.

    model = build_model(cfg.model, num_classes=5, image_size=(224, 224), channels=3)

Layers, by name: "image" (uint8 input), "preprocess_*" (fixed, see `preprocess`), "backbone"
(the headless keras.applications model, or the cut model of a `.keras` backbone file, nested as
one layer), "head_pool", "head_hidden", "head_dropout", and "logits" (float32 under mixed
precision). The custom `mlp` model has "preprocess_scale", "head_flatten" and the same head
layers (`head.pooling` does not apply), and no backbone. With `model.weights: RUN_DIR` the
backbone's weights are copied from that run's checkpoint once the classifier is built.

With `model.batchnorm: frozen` the backbone runs in inference mode even in a training step:
BatchNorm normalizes with its moving statistics (and they stay put) while the backbone is
fine-tuned, as Keras's transfer learning guide advises; the backbone's own dropout is off too.
`train` lets the backbone follow the training flag, which training one from scratch needs;
`model.batchnorm_momentum` then sets how fast its moving statistics follow the batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras

from distxfer.config.schema import HeadConfig, ModelConfig
from distxfer.errors import ConfigError, DataError
from distxfer.models import keras_internals
from distxfer.models.backbones import BackboneSpec, resolve_backbone
from distxfer.models.preprocess import apply_preprocessing
from distxfer.models.pretrained import weights_source
from distxfer.models.weights import create_backbone, load_run_backbone

BACKBONE = "backbone"
LOGITS = "logits"
PROBABILITIES = "probabilities"


def build_model(
    model_cfg: ModelConfig, num_classes: int, image_size: tuple[int, int], channels: int
) -> keras.Model:
    """The training model: uint8 images [B,H,W,C] in, float32 logits [B,num_classes] out.

    Build it after setting the global dtype policy and inside the engine's scope.
    """
    spec = resolve_backbone(model_cfg.backbone)
    height, width = (int(v) for v in image_size)
    _check_inputs(spec, model_cfg, num_classes, (height, width), channels)
    image = keras.Input(shape=(height, width, channels), dtype="uint8", name="image")
    if spec.has_backbone:
        backbone = create_backbone(spec, model_cfg, (height, width, channels))
        if model_cfg.batchnorm_momentum is not None:
            for layer in batchnorm_layers(backbone):
                layer.momentum = float(model_cfg.batchnorm_momentum)
        takes_uint8 = spec.path is not None and backbone.inputs[0].dtype == "uint8"
        x = image if takes_uint8 else apply_preprocessing(image, spec.preprocess)
        if model_cfg.batchnorm == "frozen":
            x = backbone(x, training=False)
            _keep_inference_mode(backbone)
        else:
            x = backbone(x)
        x = _pooling(model_cfg.head.pooling)(x)
    else:
        x = apply_preprocessing(image, spec.preprocess, model_cfg.rescale)
        x = keras.layers.Flatten(name="head_flatten")(x)
    logits = _head(x, model_cfg.head, num_classes)
    model = keras.Model(image, logits, name=f"{_name(spec)}_classifier")
    source = weights_source(model_cfg.weights)
    if source.kind == "run":
        load_run_backbone(model, source)
    return model


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The nested backbone model of a built classifier, or None for the mlp."""
    for layer in model.layers:
        if layer.name == BACKBONE and isinstance(layer, keras.Model):
            return layer
    return None


def feature_model(model: keras.Model) -> keras.Model:
    """The classifier's layers from its uint8 input to the backbone's feature map (shared)."""
    if backbone_of(model) is None:
        raise ConfigError("model.backbone: the mlp model has no backbone features")
    backbone = keras_internals.output_where_called(model.get_layer(BACKBONE))
    return keras.Model(model.input, backbone, name="features")


def batchnorm_frozen(model: keras.Model) -> bool:
    """Whether the backbone runs in inference mode during training (`model.batchnorm: frozen`)."""
    backbone = backbone_of(model)
    return backbone is not None and not keras_internals.receives_training(backbone)


def leaf_layers(model: keras.Layer) -> Iterator[keras.Layer]:
    """Every layer of `model` that is not a container, nested models walked into, in order."""
    children = getattr(model, "layers", None)
    if not children:
        yield model
        return
    for child in children:
        yield from leaf_layers(child)


def batchnorm_layers(model: keras.Layer) -> Iterator[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of `model`, nested ones included, in order."""
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def batchnorm_statistics(model: keras.Model) -> list[keras.Variable]:
    """The moving mean and variance of every BatchNormalization layer, nested ones included."""
    return [
        v for layer in batchnorm_layers(model) for v in (layer.moving_mean, layer.moving_variance)
    ]


def probability_model(model: keras.Model) -> keras.Model:
    """`model` with a float32 softmax on its logits, sharing its layers: for predict and export."""
    if model.layers[-1].name == PROBABILITIES:
        return model
    probabilities = keras.layers.Activation("softmax", dtype="float32", name=PROBABILITIES)(
        model.outputs[0]
    )
    return keras.Model(model.input, probabilities, name=f"{model.name}_probabilities")


def _keep_inference_mode(backbone: keras.Model) -> None:
    """Make the `training=False` the backbone was wired in with hold during training.

    Keras 3's Functional model passes its own `training` value to every layer it runs, which
    overrides a `training=False` recorded on a node (keras-team/keras#20285), so the guide's
    `base_model(x, training=False)` alone leaves BatchNorm in training mode once its layers
    are unfrozen. A layer only receives the outer value for the call-context arguments it
    registers; taking "training" out of the backbone's makes its recorded False stick.
    A model reloaded from a .keras file loses this (fine for inference): to train further,
    rebuild it with `build_model` and load the weights.
    """
    if keras_internals.receives_training(backbone) is None:
        raise ConfigError(
            f"model.batchnorm: frozen is not supported with Keras {keras.__version__}; "
            "upgrade Keras (3.15 is tested) or set model.batchnorm: train"
        )
    keras_internals.stop_passing_training(backbone)


def _check_inputs(
    spec: BackboneSpec,
    model_cfg: ModelConfig,
    num_classes: int,
    image_size: tuple[int, int],
    channels: int,
) -> None:
    if num_classes < 2:
        raise DataError(
            f"found {num_classes} class(es); a classifier needs at least 2 class folders"
        )
    if not spec.has_backbone:
        if model_cfg.weights is not None:
            raise ConfigError(
                f"model.weights: the mlp model has no pretrained weights ({model_cfg.weights!r}); "
                "set model.weights: null"
            )
        if model_cfg.backbone_args:
            raise ConfigError("model.backbone_args: the mlp model takes none; remove them")
    elif spec.is_keras_application and channels != 3:
        raise ConfigError(
            f"data.color_mode: {spec.name} needs 3-channel images but got {channels}; "
            "use color_mode: rgb (grayscale files are converted) or backbone: mlp"
        )
    if min(image_size) < spec.min_size:
        native = f" (its native size is {spec.default_size})" if spec.default_size else ""
        raise ConfigError(
            f"data.image_size: {list(image_size)} is smaller than {spec.name}'s minimum of "
            f"{spec.min_size}x{spec.min_size}; use at least [{spec.min_size}, {spec.min_size}]"
            f"{native}"
        )


def _name(spec: BackboneSpec) -> str:
    """A model name Keras accepts (a file's stem may hold any character)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in spec.name.lower())


def _pooling(kind: str) -> keras.Layer:
    if kind == "avg":
        return keras.layers.GlobalAveragePooling2D(name="head_pool")
    if kind == "max":
        return keras.layers.GlobalMaxPooling2D(name="head_pool")
    return keras.layers.Flatten(name="head_pool")


def _head(x: keras.KerasTensor, head: HeadConfig, num_classes: int) -> keras.KerasTensor:
    """Optional hidden Dense relu, optional Dropout, then float32 logits."""
    if head.hidden_units:
        x = keras.layers.Dense(head.hidden_units, activation="relu", name="head_hidden")(x)
    if head.dropout:
        x = keras.layers.Dropout(head.dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name=LOGITS)(x)
