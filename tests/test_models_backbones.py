"""The backbone table: names, sizes, preprocessing modes, and that it needs no TensorFlow."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from distxfer.errors import ConfigError
from distxfer.models.backbones import backbone_names, resolve_backbone

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("resnet50", "ResNet50"),
        ("ResNet50", "ResNet50"),
        ("mobilenet_v2", "MobileNetV2"),
        ("efficientnet-v2-b0", "EfficientNetV2B0"),
        ("Inception_ResNet_V2", "InceptionResNetV2"),
        ("convnext_tiny", "ConvNeXtTiny"),
        ("MLP", "mlp"),
    ],
)
def test_resolve_ignores_case_underscores_and_dashes(spelling, canonical):
    assert resolve_backbone(spelling).name == canonical


def test_unknown_backbone_names_the_key_and_suggests_a_close_name():
    with pytest.raises(ConfigError, match=r"^model\.backbone: .*did you mean ResNet50"):
        resolve_backbone("resnet05")


def test_table_has_every_keras_application():
    import keras

    keras_names = {
        name
        for name, obj in vars(keras.applications).items()
        if name[:1].isupper() and inspect.isfunction(obj)
    }
    assert set(backbone_names()) - {"mlp"} == keras_names


def test_each_backbone_names_the_module_of_its_constructor():
    import keras

    for name in backbone_names():
        spec = resolve_backbone(name)
        if spec.is_keras_application:
            module = getattr(keras.applications, name).__module__
            assert module.endswith("." + spec.module), name


@pytest.mark.parametrize(
    ("name", "native", "minimum"),
    [
        ("ResNet50", 224, 32),
        ("Xception", 299, 71),
        ("InceptionV3", 299, 75),
        ("InceptionResNetV2", 299, 75),
        ("NASNetLarge", 331, 32),
        ("EfficientNetB3", 300, 32),
        ("EfficientNetB7", 600, 32),
        ("EfficientNetV2S", 384, 32),
        ("EfficientNetV2L", 480, 32),
        ("ConvNeXtXLarge", 224, 32),
        ("mlp", None, 8),
    ],
)
def test_native_and_minimum_sizes_are_kerass(name, native, minimum):
    spec = resolve_backbone(name)
    assert (spec.default_size, spec.min_size) == (native, minimum)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("VGG16", "caffe"),
        ("ResNet101", "caffe"),
        ("ResNet101V2", "tf"),
        ("Xception", "tf"),
        ("MobileNet", "tf"),
        ("NASNetMobile", "tf"),
        ("DenseNet169", "torch"),
        ("EfficientNetB0", "none"),
        ("EfficientNetV2M", "none"),
        ("ConvNeXtBase", "none"),
        ("MobileNetV3Large", "none"),
        ("mlp", "rescale"),
    ],
)
def test_preprocessing_mode_per_family(name, mode):
    assert resolve_backbone(name).preprocess == mode


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Xception", "InceptionV3"])
def test_minimum_size_is_the_smallest_keras_accepts(name):
    import keras

    spec = resolve_backbone(name)
    constructor = getattr(keras.applications, name)
    constructor(include_top=False, weights=None, input_shape=(spec.min_size, spec.min_size, 3))
    with pytest.raises(ValueError):
        small = spec.min_size - 1
        constructor(include_top=False, weights=None, input_shape=(small, small, 3))
