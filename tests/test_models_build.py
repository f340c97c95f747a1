"""build_model: the classifier's structure, dtypes, input checks and BatchNorm mode."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from distxfer.config.schema import HeadConfig, ModelConfig
from distxfer.errors import ConfigError
from distxfer.models import backbone_of, build_model, leaf_layers, probability_model
from distxfer.models.build import batchnorm_frozen, batchnorm_layers


def model_cfg(backbone: str = "MobileNetV2", **kwargs) -> ModelConfig:
    kwargs.setdefault("weights", None)
    return ModelConfig(backbone=backbone, **kwargs)


def images(size: int = 32, channels: int = 3, n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.fixture
def policy():
    """Set a global dtype policy for one test, as the trainer does before build_model."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ("VGG16", 32),
        ("ResNet50", 32),
        ("InceptionV3", 75),
        ("MobileNetV2", 32),
        ("EfficientNetB0", 32),
        ("DenseNet121", 32),
        ("ConvNeXtTiny", 32),
    ],
)
def test_builds_each_family_to_float32_logits(backbone, size):
    model = build_model(model_cfg(backbone), num_classes=4, image_size=(size, size), channels=3)
    logits = model(images(size))
    assert model.inputs[0].dtype == "uint8"
    assert tuple(logits.shape) == (2, 4) and logits.dtype == "float32"
    assert np.all(np.isfinite(logits.numpy()))


def test_layers_are_input_preprocessing_backbone_head_in_order():
    model = build_model(model_cfg(head=HeadConfig(hidden_units=8, dropout=0.1)), 3, (32, 32), 3)
    assert [layer.name for layer in model.layers] == [
        "image",
        "preprocess_scale",
        "backbone",
        "head_pool",
        "head_hidden",
        "head_dropout",
        "logits",
    ]


def test_backbone_layer_names_do_not_depend_on_what_was_built_before():
    first = build_model(model_cfg("MobileNetV3Small"), 3, (32, 32), 3)
    keras.layers.Activation("relu")  # advances Keras's auto-naming counter for "activation"
    second = build_model(model_cfg("MobileNetV3Small"), 3, (32, 32), 3)
    names = [layer.name for layer in backbone_of(first).layers]
    assert names == [layer.name for layer in backbone_of(second).layers]
    assert "activation" in names  # auto-named layers start from Keras's fresh-process names


def test_backbone_of_returns_the_nested_backbone_and_none_for_mlp():
    model = build_model(model_cfg(), 3, (32, 32), 3)
    mlp = build_model(model_cfg("mlp", head=HeadConfig(pooling="flatten")), 3, (28, 28), 1)
    assert backbone_of(model) is model.get_layer("backbone")
    assert isinstance(backbone_of(model), keras.Model)
    assert backbone_of(mlp) is None


@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"])
def test_logits_stay_float32_under_mixed_precision(policy, dtype_policy):
    policy(dtype_policy)
    model = build_model(model_cfg(head=HeadConfig(hidden_units=8)), 3, (32, 32), 3)
    assert backbone_of(model).layers[-1].compute_dtype == dtype_policy.removeprefix("mixed_")
    assert model(images()).dtype == "float32"
    assert probability_model(model)(images()).dtype == "float32"


def test_probability_model_is_softmax_of_logits():
    model = build_model(model_cfg(), 3, (32, 32), 3)
    x = images()
    logits = model(x).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probability_model(model)(x).numpy(), expected, rtol=1e-5)


def test_mlp_is_the_seeds_architecture():
    cfg = model_cfg(
        "mlp", rescale=1 / 255, head=HeadConfig(pooling="flatten", hidden_units=512, dropout=0.2)
    )
    model = build_model(cfg, 10, (28, 28), 1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Flatten", "Dense", "Dropout", "Dense"]
    hidden, dropout = model.get_layer("head_hidden"), model.get_layer("head_dropout")
    assert (hidden.units, hidden.activation.__name__, dropout.rate) == (512, "relu", 0.2)
    assert model.get_layer("preprocess_scale").scale == pytest.approx(1 / 255)
    assert model.count_params() == 28 * 28 * 512 + 512 + 512 * 10 + 10


def test_grayscale_with_a_keras_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^data\.color_mode: .*3-channel"):
        build_model(model_cfg("ResNet50"), 3, (32, 32), 1)


def test_image_smaller_than_the_backbone_minimum_names_data_image_size():
    with pytest.raises(ConfigError, match=r"^data\.image_size: .*InceptionV3's minimum of 75x75"):
        build_model(model_cfg("InceptionV3"), 3, (64, 64), 3)


def test_unknown_backbone_arg_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"backbone_args\.alpah: .*accepts: alpha$"):
        build_model(model_cfg(backbone_args={"alpah": 0.35}), 3, (32, 32), 3)


def test_backbone_args_reach_the_constructor():
    model = build_model(model_cfg(backbone_args={"alpha": 0.35}), 3, (32, 32), 3)
    assert backbone_of(model).get_layer("Conv1").filters == 16  # 32 at alpha 1.0


def test_backbone_args_cannot_turn_off_the_backbones_own_preprocessing():
    cfg = model_cfg("EfficientNetV2B0", backbone_args={"include_preprocessing": False})
    with pytest.raises(ConfigError, match="include_preprocessing"):
        build_model(cfg, 3, (32, 32), 3)


def test_backbones_with_their_own_preprocessing_keep_it():
    model = build_model(model_cfg("MobileNetV3Small"), 3, (32, 32), 3)
    assert isinstance(backbone_of(model).layers[1], keras.layers.Rescaling)


def test_mlp_with_imagenet_weights_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^model\.weights: "):
        build_model(ModelConfig(backbone="mlp", weights="imagenet"), 3, (28, 28), 1)


def test_frozen_batchnorm_keeps_moving_mean_in_a_training_forward_pass():
    model = build_model(model_cfg(batchnorm="frozen"), 3, (32, 32), 3)
    model.trainable = True  # even with every layer unfrozen
    bn = backbone_of(model).get_layer("bn_Conv1")
    before = bn.moving_mean.numpy().copy()
    model(images(n=4), training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_frozen_batchnorm_makes_training_output_equal_inference_output():
    model = build_model(model_cfg(batchnorm="frozen"), 3, (32, 32), 3)
    model.trainable = True
    x = images(n=4)
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-5)


def test_trained_batchnorm_follows_the_training_flag():
    model = build_model(model_cfg(batchnorm="train"), 3, (32, 32), 3)
    model.trainable = True
    bn = backbone_of(model).get_layer("bn_Conv1")
    before = bn.moving_mean.numpy().copy()
    model(images(n=4), training=True)
    assert not np.array_equal(bn.moving_mean.numpy(), before)


def test_batchnorm_momentum_sets_how_far_one_training_batch_moves_the_statistics():
    model = build_model(model_cfg(batchnorm="train", batchnorm_momentum=0.25), 3, (32, 32), 3)
    bn = backbone_of(model).get_layer("bn_Conv1")
    assert {layer.momentum for layer in batchnorm_layers(backbone_of(model))} == {0.25}
    model(images(n=4), training=True)  # moving = 0.25 * moving + 0.75 * batch mean, from 0
    seen = bn.moving_mean.numpy()
    default = build_model(model_cfg(batchnorm="train"), 3, (32, 32), 3)
    default.set_weights(model.get_weights())
    dbn = backbone_of(default).get_layer("bn_Conv1")
    dbn.moving_mean.assign(np.zeros_like(seen))
    default(images(n=4), training=True)  # MobileNetV2's own 0.999: a thousandth of the way
    np.testing.assert_allclose(dbn.moving_mean.numpy() * 750, seen, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"batchnorm": "train", "batchnorm_momentum": 1.0}, "must be in [0, 1)"),
        ({"batchnorm": "frozen", "batchnorm_momentum": 0.9}, "only applies with"),
    ],
)
def test_batchnorm_momentum_out_of_range_or_with_frozen_batchnorm_is_a_config_error(kwargs, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        model_cfg(**kwargs).check("model")


def test_batchnorm_frozen_tells_which_mode_the_model_was_built_in():
    frozen = build_model(model_cfg(batchnorm="frozen"), 3, (32, 32), 3)
    trained = build_model(model_cfg(batchnorm="train"), 3, (32, 32), 3)
    mlp = build_model(model_cfg("mlp", head=HeadConfig(pooling="flatten")), 3, (28, 28), 1)
    assert batchnorm_frozen(frozen)
    assert not batchnorm_frozen(trained)
    assert not batchnorm_frozen(mlp)


def test_frozen_batchnorm_still_applies_head_dropout_in_training():
    cfg = model_cfg(batchnorm="frozen", head=HeadConfig(dropout=0.5, hidden_units=64))
    model = build_model(cfg, 3, (32, 32), 3)
    x = images(n=4)
    trained, inferred = model(x, training=True).numpy(), model(x, training=False).numpy()
    assert not np.allclose(trained, inferred, rtol=1e-3, atol=0)


def test_leaf_layers_put_the_backbones_layers_in_its_place():
    model = build_model(model_cfg(head=HeadConfig(hidden_units=8)), 3, (32, 32), 3)
    backbone = backbone_of(model)
    expected = [*model.layers[:2], *backbone.layers, *model.layers[3:]]
    assert model.layers[2] is backbone
    assert [id(layer) for layer in leaf_layers(model)] == [id(layer) for layer in expected]


def test_leaf_layers_find_the_batchnorm_layers_keras_flatten_layers_finds():
    model = build_model(model_cfg("MobileNetV2"), 3, (32, 32), 3)

    def batchnorm_ids(layers):
        return {id(layer) for layer in layers if isinstance(layer, keras.layers.BatchNormalization)}

    expected = batchnorm_ids(model._flatten_layers())
    assert len(expected) == 52  # MobileNetV2's BatchNormalization layers
    assert batchnorm_ids(leaf_layers(model)) == expected


def test_imagenet_weights_without_internet_is_a_config_error_naming_the_cache(
    tmp_path, monkeypatch
):
    from urllib.error import URLError

    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))  # an empty cache

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(ConfigError, match=r"^model\.weights: .*internet") as err:
        build_model(model_cfg(weights="imagenet"), 3, (96, 96), 3)
    assert str(tmp_path / "models") in str(err.value)
    assert "\n" not in str(err.value)
