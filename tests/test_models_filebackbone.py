"""A team's own `.keras` model as the backbone: cut at a layer, phases, BatchNorm, safe mode."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from distxfer.config.schema import ModelConfig, PhaseConfig
from distxfer.errors import ConfigError
from distxfer.models import apply_phase, backbone_of, build_model, feature_model, leaf_layers
from distxfer.models.pretrained import check_model_sources

L = keras.layers


def team_model(path, *, nested: bool = False, lam: bool = False) -> str:
    """A small trained-elsewhere classifier: scaling, two conv blocks with BatchNorm, a head."""
    image = keras.Input((16, 16, 3), name="pixels")
    x = L.Rescaling(1 / 255, name="scale")(image)
    if nested:
        inner = keras.Input((16, 16, 3))
        y = L.Conv2D(4, 3, name="inner_conv")(inner)
        y = L.BatchNormalization(name="inner_bn")(y)
        x = keras.Model(inner, L.ReLU(name="inner_relu")(y), name="base")(x)
    else:
        x = L.Conv2D(4, 3, name="c1")(x)
        x = L.BatchNormalization(name="bn1")(x)
        x = L.ReLU(name="r1")(x)
    if lam:
        x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.Conv2D(6, 3, name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="features")(x)
    out = L.Dense(7, name="their_head")(L.GlobalAveragePooling2D()(x))
    keras.Model(image, out, name="team").save(path)
    return str(path)


def config(path: str, layer: str = "features", **kwargs) -> ModelConfig:
    return ModelConfig(backbone=path, backbone_layer=layer, weights=None, **kwargs)


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> str:
    return team_model(tmp_path_factory.mktemp("team") / "team.keras")


def test_the_cut_model_is_the_backbone_with_the_files_weights(team):
    model = build_model(config(team), num_classes=3, image_size=(16, 16), channels=3)
    original = keras.models.load_model(team)
    backbone = backbone_of(model)
    assert backbone.output.shape[1:] == original.get_layer("features").output.shape[1:]
    assert "their_head" not in [layer.name for layer in backbone.layers]
    cut = keras.Model(original.input, original.get_layer("features").output)
    expected = cut(images().astype("float32"), training=False)
    got = feature_model(model)(images(), training=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # raw pixels in, as saved


def test_from_layer_and_top_n_choose_the_files_layers(team):
    model = build_model(config(team), 3, (16, 16), 3)
    apply_phase(model, PhaseConfig(name="p", trainable="from:c2"))
    learning = [layer.name for layer in backbone_of(model).layers if layer.trainable_weights]
    assert learning == ["c2"]  # bn2 stays frozen, as in a keras.applications backbone
    apply_phase(model, PhaseConfig(name="p", trainable="top:4"))  # c1, bn1, c2, bn2
    learning = [layer.name for layer in backbone_of(model).layers if layer.trainable_weights]
    assert learning == ["c1", "c2"]


def test_frozen_batchnorm_of_a_file_backbone_keeps_its_statistics_in_training(team):
    model = build_model(config(team), 3, (16, 16), 3)
    apply_phase(model, PhaseConfig(name="p", trainable="all"))
    bn = backbone_of(model).get_layer("bn1")
    before = bn.moving_mean.numpy().copy()
    model(images(), training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_from_layer_reaches_into_a_model_nested_in_the_file(tmp_path):
    path = team_model(tmp_path / "nested.keras", nested=True)
    model = build_model(config(path), 3, (16, 16), 3)
    apply_phase(model, PhaseConfig(name="p", trainable="from:inner_conv"))
    learning = [layer.name for layer in leaf_layers(backbone_of(model)) if layer.trainable_weights]
    assert learning == ["inner_conv", "c2"]


def test_a_lambda_layer_is_refused_unless_safe_mode_is_turned_off(tmp_path):
    path = team_model(tmp_path / "lambda.keras", lam=True)
    with pytest.raises(ConfigError, match=r"Lambda layer\(s\) double.*model.safe_mode: false"):
        check_model_sources(config(path))  # before TensorFlow: the file's JSON is enough
    with pytest.raises(ConfigError, match="model.safe_mode: false"):
        build_model(config(path), 3, (16, 16), 3)
    model = build_model(config(path, safe_mode=False), 3, (16, 16), 3)
    assert "double" in [layer.name for layer in backbone_of(model).layers]


def test_an_unknown_cut_layer_is_named_with_a_suggestion(team):
    with pytest.raises(ConfigError, match=r"model.backbone_layer: .* no top-level layer 'feature'"):
        check_model_sources(config(team, layer="feature"))
    with pytest.raises(ConfigError, match="did you mean features"):
        build_model(config(team, layer="feature"), 3, (16, 16), 3)


def test_an_image_size_the_file_does_not_take_names_data_image_size(team):
    with pytest.raises(ConfigError, match=r"data.image_size: \[24, 24\] does not fit .* 16x16"):
        build_model(config(team), 3, (24, 24), 3)


def test_a_missing_file_is_reported_before_keras_loads_anything(tmp_path):
    with pytest.raises(ConfigError, match=r"^model.backbone: .*nope.keras does not exist"):
        check_model_sources(config(str(tmp_path / "nope.keras")))
