"""In-model preprocessing equals each family's keras.applications preprocess_input."""

from __future__ import annotations

import importlib

import keras
import numpy as np
import pytest

from distxfer.models.backbones import backbone_names, resolve_backbone
from distxfer.models.preprocess import preprocessing_layers

# One backbone per keras.applications module: the module decides preprocess_input.
FAMILIES = sorted({resolve_backbone(n).module: n for n in backbone_names() if n != "mlp"}.values())


def images(channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, 9, 7, channels), dtype=np.uint8)


def preprocess(mode: str, x: np.ndarray, rescale: float = 1 / 255) -> np.ndarray:
    inputs = keras.Input(x.shape[1:], dtype="uint8")
    y = inputs
    for layer in preprocessing_layers(mode, rescale):
        y = layer(y)
    return keras.Model(inputs, y)(x).numpy()


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("name", FAMILIES)
def test_preprocessing_matches_keras_preprocess_input(name):
    spec = resolve_backbone(name)
    module = importlib.import_module(f"keras.applications.{spec.module}")
    x = images()
    expected = module.preprocess_input(x.astype("float32"))
    np.testing.assert_allclose(preprocess(spec.preprocess, x), expected, rtol=1e-6, atol=1e-5)


def test_caffe_mode_reverses_channels_and_subtracts_bgr_mean():
    x = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    x[..., 0] = 255  # pure red
    out = preprocess("caffe", x)[0, 0, 0]
    np.testing.assert_allclose(out, [-103.939, -116.779, 255 - 123.68], rtol=1e-6)


def test_rescale_mode_multiplies_by_model_rescale():
    x = images(channels=1)
    np.testing.assert_allclose(preprocess("rescale", x, rescale=0.5), x * 0.5)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "none", "rescale"])
def test_preprocessing_has_no_trainable_weights(mode):
    layers = preprocessing_layers(mode)
    assert all(not layer.trainable_weights for layer in layers)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocessing_computes_in_float32_under_mixed_precision(mode, mixed_precision):
    x = images()
    out = preprocess(mode, x)
    assert out.dtype == np.float32
    keras.config.set_dtype_policy("float32")
    np.testing.assert_array_equal(out, preprocess(mode, x))
