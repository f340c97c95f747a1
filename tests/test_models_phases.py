"""apply_phase: which layers learn in each kind of phase, and BatchNorm staying frozen."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from distxfer.config.schema import HeadConfig, ModelConfig, PhaseConfig
from distxfer.errors import ConfigError
from distxfer.models import apply_phase, backbone_of, build_model


def build(backbone: str, **kwargs) -> keras.Model:
    channels = 1 if backbone == "mlp" else 3
    size = 28 if backbone == "mlp" else 32
    cfg = ModelConfig(backbone=backbone, weights=None, **kwargs)
    return build_model(cfg, num_classes=3, image_size=(size, size), channels=channels)


def phase(trainable: str, **kwargs) -> PhaseConfig:
    return PhaseConfig(name="p", trainable=trainable, **kwargs)


def learning(model: keras.Model) -> list[str]:
    """Names of backbone layers with trainable weights."""
    return [layer.name for layer in backbone_of(model).layers if layer.trainable_weights]


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture
def vgg16():
    return build("VGG16", head=HeadConfig(hidden_units=8))


@pytest.fixture
def mobilenet():
    return build("MobileNetV2")


def test_head_phase_trains_only_the_head(vgg16):
    apply_phase(vgg16, phase("head"))
    names = {v.path.split("/")[0] for v in vgg16.trainable_weights}
    assert names == {"head_hidden", "logits"}


def test_all_phase_trains_every_backbone_layer_but_batchnorm(mobilenet):
    apply_phase(mobilenet, phase("all"))
    backbone = backbone_of(mobilenet)
    for layer in backbone.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert bool(layer.trainable_weights) == (bool(layer.weights) and not is_bn), layer.name


def test_train_batchnorm_lets_unfrozen_batchnorm_learn(mobilenet):
    apply_phase(mobilenet, phase("all", train_batchnorm=True))
    bn = backbone_of(mobilenet).get_layer("bn_Conv1")
    assert [v.name for v in bn.trainable_weights] == ["gamma", "beta"]


def test_a_model_built_to_train_batchnorm_lets_unfrozen_batchnorm_learn():
    model = build("MobileNetV2", batchnorm="train")
    apply_phase(model, phase("all"))
    assert backbone_of(model).get_layer("bn_Conv1").trainable_weights


def test_top_n_trains_the_last_n_backbone_layers_with_weights(vgg16):
    apply_phase(vgg16, phase("top:3"))
    assert learning(vgg16) == ["block5_conv1", "block5_conv2", "block5_conv3"]


def test_top_n_counts_batchnorm_layers_that_stay_frozen(mobilenet):
    apply_phase(mobilenet, phase("top:2"))  # the last two with weights: Conv_1, Conv_1_bn
    assert learning(mobilenet) == ["Conv_1"]


def test_from_layer_trains_that_layer_and_everything_after(vgg16):
    apply_phase(vgg16, phase("from:block5_conv2"))
    assert learning(vgg16) == ["block5_conv2", "block5_conv3"]


def test_unknown_from_layer_is_a_config_error_with_a_suggestion(vgg16):
    with pytest.raises(ConfigError, match=r"^phases\.p\.trainable: .*did you mean block5_conv"):
        apply_phase(vgg16, phase("from:block5_conv"))


def test_a_later_head_phase_freezes_the_backbone_again(vgg16):
    apply_phase(vgg16, phase("all"))
    apply_phase(vgg16, phase("head"))
    assert learning(vgg16) == []


def test_preprocessing_never_trains(vgg16):
    apply_phase(vgg16, phase("all"))
    assert not vgg16.get_layer("preprocess_bgr").trainable_weights


def test_summary_counts_trainable_layers_and_parameters(vgg16):
    summary = apply_phase(vgg16, phase("top:1"))  # block5_conv3, head_hidden, logits
    expected = (3 * 3 * 512 * 512 + 512) + (512 * 8 + 8) + (8 * 3 + 3)
    assert (summary.trainable_layers, summary.trainable_params) == (3, expected)
    assert summary.total_params == vgg16.count_params()
    assert summary.first_trainable == "block5_conv3"
    assert str(summary).startswith(f"3 layers, {expected:,} of ")


def test_unfrozen_batchnorm_stays_in_inference_mode():
    model = build("MobileNetV2", batchnorm="frozen")
    apply_phase(model, phase("all", train_batchnorm=True))
    bn = backbone_of(model).get_layer("block_1_expand_BN")
    before = bn.moving_mean.numpy().copy()
    x = images()
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_mlp_head_and_all_phases_train_every_dense_layer():
    mlp = build("mlp", head=HeadConfig(hidden_units=16))
    for spec in ("head", "all"):
        apply_phase(mlp, phase(spec))
        assert len(mlp.trainable_weights) == 4  # two Dense layers: kernel and bias each


@pytest.mark.parametrize("spec", ["top:2", "from:head_hidden"])
def test_mlp_has_no_backbone_layers_to_choose(spec):
    mlp = build("mlp", head=HeadConfig(hidden_units=16))
    with pytest.raises(ConfigError, match=r"^phases\.p\.trainable: the mlp model"):
        apply_phase(mlp, phase(spec))


def snapshot(model: keras.Model, *names: str) -> list[np.ndarray]:
    return [model.get_layer(n).weights[0].numpy().copy() for n in names]


@pytest.mark.slow
def test_fit_changes_only_the_layers_the_phase_unfroze():
    model = build("VGG16")
    apply_phase(model, phase("from:block5_conv3"))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    backbone = backbone_of(model)
    before = snapshot(backbone, "block5_conv2", "block5_conv3") + snapshot(model, "preprocess_bgr")
    model.fit(images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    after = snapshot(backbone, "block5_conv2", "block5_conv3") + snapshot(model, "preprocess_bgr")
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[2], before[2])


@pytest.mark.slow
def test_fit_learns_batchnorm_scale_but_not_its_statistics_when_frozen():
    model = build("ResNet50", batchnorm="frozen")  # its random-init activations do not vanish
    apply_phase(model, phase("all", train_batchnorm=True))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    bn = backbone_of(model).get_layer("conv5_block3_3_bn")
    gamma, mean = bn.gamma.numpy().copy(), bn.moving_mean.numpy().copy()
    model.fit(images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(bn.gamma.numpy(), gamma)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
