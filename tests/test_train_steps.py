"""The compiled training step: class-weighted loss as computed by hand, gradient accumulation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from distxfer.engines.detect import Launch
from distxfer.engines.single import SingleEngine
from distxfer.train.steps import TrainStep, weighted_loss

IMAGES = np.random.default_rng(3).integers(0, 256, (8, 2, 2, 1)).astype(np.uint8)
LABELS = np.array([0, 1, 2, 1, 0, 2, 2, 1], np.int32)
WEIGHTS = np.array([1, 1, 1, 0, 1, 1, 1, 1], np.float32)  # sample 3 is padding
CLASS_WEIGHTS = [0.5, 2.0, 1.0]


def linear_model(penalty: float = 0.0) -> keras.Model:
    image = keras.Input((2, 2, 1), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(image))
    regularizer = keras.regularizers.L2(penalty) if penalty else None
    dense = keras.layers.Dense(3, kernel_regularizer=regularizer, name="logits")
    model = keras.Model(image, dense(x))
    dense.kernel.assign(np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32))
    return model


def batches(size: int) -> tf.data.Dataset:
    data = {"image": IMAGES, "label": LABELS, "weight": WEIGHTS, "id": np.arange(8)}
    return tf.data.Dataset.from_tensor_slices(data).batch(size)


def one_step(model: keras.Model, batch_size: int, **kwargs) -> list[np.ndarray]:
    """The weights after one plain SGD step (rate 1) over the 8 samples, global batch 8."""
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(model.trainable_variables)
    step = TrainStep(
        model, optimizer, SingleEngine(Launch("none")), global_batch=8, num_classes=3, **kwargs
    )
    step.run(iter(batches(batch_size)), 1)
    return [v.numpy() for v in model.trainable_variables]


def test_the_loss_weighs_each_sample_by_its_class_weight_over_the_global_batch():
    losses = np.array([0.1, 0.2, 0.3, 5.0, 0.4, 0.5, 0.6, 0.7], np.float32)
    by_hand = sum(
        w * CLASS_WEIGHTS[y] * loss for w, y, loss in zip(WEIGHTS, LABELS, losses, strict=True)
    )
    got = weighted_loss(losses, WEIGHTS, LABELS, tf.constant(CLASS_WEIGHTS), 8)
    assert float(got) == pytest.approx(by_hand / 8, rel=1e-6)


def test_a_class_weighted_step_follows_the_gradient_of_the_loss_computed_by_hand():
    model = linear_model()
    kernel, bias = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    x = IMAGES.reshape(8, 4) / 255.0
    logits = x @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scale = WEIGHTS * np.take(CLASS_WEIGHTS, LABELS) / 8  # d loss / d cross-entropy of a sample
    dlogits = (p - np.eye(3)[LABELS]) * scale[:, None]
    new_kernel, new_bias = one_step(model, 8, class_weights=CLASS_WEIGHTS)
    np.testing.assert_allclose(new_kernel, kernel - x.T @ dlogits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - dlogits.sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("penalty", [0.0, 0.1])
def test_accumulating_two_micro_batches_takes_the_step_of_one_whole_batch(penalty):
    whole = one_step(linear_model(penalty), 8, class_weights=CLASS_WEIGHTS)
    accumulated = one_step(linear_model(penalty), 4, class_weights=CLASS_WEIGHTS, accumulation=2)
    for a, b in zip(whole, accumulated, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_phase_with_a_fixed_global_batch_logs_how_many_micro_batches_it_accumulates(
    tiny_data, tmp_path, caplog
):
    from conftest import tiny_overrides

    from distxfer.config import load_config
    from distxfer.data import load_splits, make_batching
    from distxfer.models import build_model
    from distxfer.train.epochs import Epochs
    from distxfer.train.phase import set_up_phase

    config = load_config(None, tiny_overrides(tiny_data, tmp_path, "data.global_batch=12"))
    splits = load_splits(config.data, config.seed)
    epochs = Epochs(config, splits.train, make_batching(config.data, 1, 1))
    model = build_model(config.model, splits.num_classes, (16, 16), 3)
    with caplog.at_level("INFO", logger="distxfer"):
        setup = set_up_phase(config, 0, model, SingleEngine(Launch("none")), epochs)
    assert setup.step.accumulation == 3  # 12 = batch_size 4 x 1 replica x 3
    assert "global batch 12, accumulating 3 micro-batches per step" in caplog.text
