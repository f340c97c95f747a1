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
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from distxfer.errors import ConfigError

PreprocessMode = Literal["tf", "torch", "caffe", "none", "rescale"]


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: its canonical name and what building it needs to know."""

    name: str  # canonical spelling, e.g. "ResNet50"; for Keras models also the constructor name
    module: str | None  # keras.applications submodule holding preprocess_input; None for mlp
    preprocess: PreprocessMode
    default_size: int | None  # input size its ImageNet weights were trained at; None for mlp
    min_size: int  # smallest height or width the architecture accepts

    @property
    def is_keras_application(self) -> bool:
        return self.module is not None


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
    """The backbone called `name`, ignoring case, `_` and `-` (`mobilenet_v2` is MobileNetV2)."""
    spec = BACKBONES.get(_key(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(_key(name), list(BACKBONES), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(BACKBONES[k].name for k in close)}? " if close else ""
    raise ConfigError(
        f"model.backbone: unknown backbone {name!r}; {hint}"
        f"choose one of {', '.join(backbone_names())}"
    )
