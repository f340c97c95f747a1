"""Exports reload with plain Keras / TensorFlow and predict what the in-memory model predicts."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distxfer.config.schema import Config, DataConfig, HeadConfig, ModelConfig
from distxfer.errors import ConfigError
from distxfer.export import export_backbone, export_keras, export_savedmodel, sidecar_path
from distxfer.models import build_model, feature_model, probability_model

CLASSES = ["cat", "dog", "fox"]
# The run's config, as the exports see it (only the backbone and color mode are recorded).
CONFIG = Config(model=ModelConfig(backbone="vgg16", weights=None, head=HeadConfig(hidden_units=8)))
MLP_CONFIG = Config(
    data=DataConfig(color_mode="grayscale"),
    model=ModelConfig(backbone="mlp", weights=None, head=HeadConfig(hidden_units=16, dropout=0.2)),
)


def images(size: int = 32, channels: int = 3, n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    # VGG16 has the caffe preprocessing (a fixed convolution), the most to get wrong on reload.
    return build_model(CONFIG.model, num_classes=3, image_size=(32, 32), channels=3)


def test_keras_export_reloads_with_plain_load_model_and_predicts_the_same(model, tmp_path):
    path = export_keras(model, tmp_path / "model.keras", class_names=CLASSES, config=CONFIG)
    reloaded = keras.models.load_model(path)  # no custom_objects
    x = images()
    np.testing.assert_allclose(reloaded(x), probability_model(model)(x), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_savedmodel_serve_takes_uint8_images_and_predicts_the_same(model, tmp_path):
    path = export_savedmodel(model, tmp_path / "serving", class_names=CLASSES, config=CONFIG)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert (spec.dtype, spec.shape.as_list()) == (tf.uint8, [None, 32, 32, 3])
    x = images()
    probabilities = loaded.serve(x)["probabilities"]
    np.testing.assert_allclose(probabilities, probability_model(model)(x), rtol=1e-5, atol=1e-7)


def test_sidecar_describes_the_export(model, tmp_path):
    path = export_keras(model, tmp_path / "model.keras", class_names=CLASSES, config=CONFIG)
    info = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path) == tmp_path / "model.json"
    assert info["class_names"] == CLASSES
    assert (info["image_size"], info["channels"], info["color_mode"]) == ([32, 32], 3, "rgb")
    assert info["backbone"] == "VGG16"  # the canonical name, whatever the config's spelling


def test_failed_keras_export_keeps_the_previous_file_and_no_temporary(model, tmp_path, monkeypatch):
    path = export_keras(model, tmp_path / "model.keras", class_names=CLASSES, config=CONFIG)
    previous = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        export_keras(model, path, class_names=CLASSES, config=CONFIG)
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.keras"]


@pytest.mark.slow
def test_savedmodel_export_replaces_an_earlier_one(model, tmp_path):
    path = tmp_path / "serving"
    export_savedmodel(model, path, class_names=CLASSES, config=CONFIG)
    (path / "stale.txt").write_text("from the earlier export")
    export_savedmodel(model, path, class_names=CLASSES, config=CONFIG)
    assert not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serving", "serving.json"]


def test_class_names_must_match_the_outputs(model, tmp_path):
    with pytest.raises(ValueError, match="3 outputs but 2 class names"):
        export_keras(model, tmp_path / "model.keras", class_names=CLASSES[:2], config=CONFIG)
    assert not (tmp_path / "model.keras").exists()


def test_grayscale_mlp_round_trips(tmp_path):
    mlp = build_model(MLP_CONFIG.model, num_classes=3, image_size=(28, 28), channels=1)
    path = export_keras(mlp, tmp_path / "mlp.keras", class_names=CLASSES, config=MLP_CONFIG)
    x = images(size=28, channels=1)
    np.testing.assert_allclose(
        keras.models.load_model(path)(x), probability_model(mlp)(x), rtol=1e-5, atol=1e-7
    )


@pytest.mark.slow
def test_export_under_mixed_precision_outputs_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        cfg = ModelConfig(backbone="MobileNetV2", weights=None)
        model = build_model(cfg, num_classes=3, image_size=(32, 32), channels=3)
        path = export_keras(model, tmp_path / "m.keras", class_names=CLASSES, config=CONFIG)
        reloaded = keras.models.load_model(path)
    finally:
        keras.config.set_dtype_policy("float32")
    assert reloaded(images()).dtype == "float32"


def test_backbone_export_serves_features_and_transfers_as_file_or_weights(model, tmp_path):
    weights, keras_file, sidecar = export_backbone(model, tmp_path, config=CONFIG)
    assert (weights.name, keras_file.name, sidecar.name) == (
        "backbone.weights.h5",
        "backbone.keras",
        "backbone.json",
    )
    x = images()
    expected = feature_model(model)(x, training=False)
    np.testing.assert_allclose(keras.models.load_model(keras_file)(x), expected, rtol=1e-5)
    info = json.loads(sidecar.read_text())
    assert info["use_as"]["model.backbone_layer"] == "backbone"
    as_file = ModelConfig(backbone=str(keras_file), backbone_layer="backbone", weights=None)
    rebuilt = build_model(as_file, num_classes=2, image_size=(32, 32), channels=3)
    np.testing.assert_allclose(feature_model(rebuilt)(x, training=False), expected, rtol=1e-5)
    as_weights = ModelConfig(backbone="vgg16", weights=str(weights))
    reloaded = build_model(as_weights, num_classes=4, image_size=(32, 32), channels=3)
    np.testing.assert_allclose(feature_model(reloaded)(x, training=False), expected, rtol=1e-5)


def test_the_mlp_has_no_backbone_to_export(tmp_path):
    mlp = build_model(MLP_CONFIG.model, num_classes=3, image_size=(28, 28), channels=1)
    with pytest.raises(ConfigError, match="the mlp model has no backbone"):
        export_backbone(mlp, tmp_path, config=MLP_CONFIG)
