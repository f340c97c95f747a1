"""Every backbone distxfer can build, as plain data: no TensorFlow or Keras import here.

The config is validated before TensorFlow starts, so the name lookup, the native input size
(`default_size`, used when `data.image_size` is null) and the minimum input size live in this
pure-Python table. Each entry names its `keras.applications` constructor and submodule and how that
backbone wants its pixels preprocessed:

- "tf": x / 127.5 - 1
- "torch": x / 255, then the ImageNet mean and standard deviation per channel
- "caffe": RGB -> BGR, then subtract the ImageNet BGR mean
- "none": the backbone preprocesses inside itself (EfficientNet, EfficientNetV2, ConvNeXt,
  MobileNetV3); it takes raw 0..255 pixels
- "rescale": the custom `mlp` model, x * model.rescale

`model.backbone` may also be the path of a `.keras` model (`is_model_file`): a team's own model,
cut at `model.backbone_layer`. Its spec is made from the path alone (no file is read here); it
gets raw 0..255 float32 pixels ("none"), so its own preprocessing is whatever layers it holds.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Literal

from distxfer.errors import ConfigError

PreprocessMode = Literal["tf", "torch", "caffe", "none", "rescale"]
MODEL_FILE_SUFFIX = ".keras"


def is_model_file(backbone: str) -> bool:
    """Whether `model.backbone` names a `.keras` model file rather than a built-in backbone."""
    return backbone.strip().endswith(MODEL_FILE_SUFFIX)


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: its canonical name and what building it needs to know."""

    name: str  # canonical spelling, e.g. "ResNet50"; for Keras models also the constructor name
    module: str | None  # keras.applications submodule holding preprocess_input; None for mlp
    preprocess: PreprocessMode
    default_size: int | None  # input size its ImageNet weights were trained at; None for mlp
    min_size: int  # smallest height or width the architecture accepts
    path: str | None = None  # a .keras model file: its path, as the config gives it

    @property
    def is_keras_application(self) -> bool:
        return self.module is not None

    @property
    def has_backbone(self) -> bool:
        """A keras.applications model or a model file (everything but the mlp)."""
        return self.module is not None or self.path is not None


def _specs() -> list[BackboneSpec]:
    s = BackboneSpec
    table = [
        s("Xception", "xception", "tf", 299, 71),
        s("VGG16", "vgg16", "caffe", 224, 32),
        s("VGG19", "vgg19", "caffe", 224, 32),
        s("InceptionV3", "inception_v3", "tf", 299, 75),
        s("InceptionResNetV2", "inception_resnet_v2", "tf", 299, 75),
        s("MobileNet", "mobilenet", "tf", 224, 32),
        s("MobileNetV2", "mobilenet_v2", "tf", 224, 32),
        s("MobileNetV3Small", "mobilenet_v3", "none", 224, 32),
        s("MobileNetV3Large", "mobilenet_v3", "none", 224, 32),
        s("NASNetMobile", "nasnet", "tf", 224, 32),
        s("NASNetLarge", "nasnet", "tf", 331, 32),
    ]
    for depth in (50, 101, 152):
        table.append(s(f"ResNet{depth}", "resnet", "caffe", 224, 32))
        table.append(s(f"ResNet{depth}V2", "resnet_v2", "tf", 224, 32))
    for depth in (121, 169, 201):
        table.append(s(f"DenseNet{depth}", "densenet", "torch", 224, 32))
    for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600)):
        table.append(s(f"EfficientNetB{i}", "efficientnet", "none", size, 32))
    v2_sizes = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "S": 384, "M": 480, "L": 480}
    for variant, size in v2_sizes.items():
        table.append(s(f"EfficientNetV2{variant}", "efficientnet_v2", "none", size, 32))
    for variant in ("Tiny", "Small", "Base", "Large", "XLarge"):
        table.append(s(f"ConvNeXt{variant}", "convnext", "none", 224, 32))
    # The seeds' MNIST MLP: Flatten, Dense 512 relu, Dropout 0.2, Dense N (sizes from model.head).
    table.append(s("mlp", None, "rescale", None, 8))
    return table


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


BACKBONES: dict[str, BackboneSpec] = {_key(spec.name): spec for spec in _specs()}


def backbone_names() -> list[str]:
    """Canonical names of every backbone, in table order."""
    return [spec.name for spec in BACKBONES.values()]


def resolve_backbone(name: str) -> BackboneSpec:
    """The backbone called `name`, ignoring case, `_` and `-` (`mobilenet_v2` is MobileNetV2),
    or the `.keras` file `name` (its native size comes from `distxfer.models.kerasfile`)."""
    if is_model_file(name):
        path = name.strip()
        stem = os.path.basename(path)[: -len(MODEL_FILE_SUFFIX)]
        return BackboneSpec(stem or "model", None, "none", None, 1, path=path)
    spec = BACKBONES.get(_key(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(_key(name), list(BACKBONES), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(BACKBONES[k].name for k in close)}? " if close else ""
    raise ConfigError(
        f"model.backbone: unknown backbone {name!r}; {hint}"
        f"choose one of {', '.join(backbone_names())}"
    )
