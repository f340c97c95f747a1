"""The frozen-phase feature cache: where it applies, that it reads samples as images do, and that
a head trained on features reaches the accuracy of one trained on images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from distxfer.config import load_config  # noqa: E402
from distxfer.data import Batching, load_splits  # noqa: E402
from distxfer.data.featuresplit import FeatureSplit  # noqa: E402
from distxfer.data.layout import Reading  # noqa: E402
from distxfer.engines.detect import Launch  # noqa: E402
from distxfer.engines.single import SingleEngine  # noqa: E402
from distxfer.models import build_model  # noqa: E402
from distxfer.train import featurecache  # noqa: E402
from distxfer.train.loop import Trainer  # noqa: E402


def config(tiny_data, run_dir: Path, *extra: str):
    return load_config(
        None,
        [
            f"data.train_dir={tiny_data['train']}",
            f"data.val_dir={tiny_data['val']}",
            "data.image_size=[32, 32]",
            "data.batch_size=8",
            "model.backbone=VGG16",  # no BatchNorm: random weights keep the colours apart
            "model.weights=null",
            "phases=[{name: head, epochs: 3, trainable: head, learning_rate: 0.01}]",
            f"output.run_dir={run_dir}",
            "output.tensorboard=false",
            *extra,
        ],
    )


def train(cfg) -> Trainer:
    splits = load_splits(cfg.data, cfg.seed)
    trainer = Trainer(cfg, SingleEngine(Launch("none")), splits, Path(cfg.output.run_dir))
    trainer.fit()
    return trainer


@pytest.mark.slow
def test_a_head_trained_on_features_reaches_the_accuracy_of_one_trained_on_images(
    tiny_data, tmp_path, caplog
):
    with caplog.at_level(logging.INFO):
        on_features = train(config(tiny_data, tmp_path / "features"))
    assert "feature cache on" in caplog.text
    on_images = train(config(tiny_data, tmp_path / "images", "data.feature_cache=false"))
    accuracy = [t.final_results["validation"].metrics["accuracy"] for t in (on_features, on_images)]
    assert accuracy[1] > 1 / 3 + 0.1  # the head learned something on this backbone
    assert abs(accuracy[0] - accuracy[1]) <= 0.01


@pytest.mark.slow
def test_features_are_read_from_the_cache_on_the_next_run(tiny_data, tmp_path, caplog):
    train(config(tiny_data, tmp_path / "first"))
    with caplog.at_level(logging.INFO):
        train(config(tiny_data, tmp_path / "second"))
    assert "train features read from" in caplog.text


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("data.augment.horizontal_flip=true", "augmentation changes the images"),
        ("model.batchnorm=train", "runs the backbone in training mode"),
        ("phases.0.trainable=all", "the backbone learns"),
        ("data.feature_cache=false", "data.feature_cache: false"),
    ],
)
def test_the_cache_is_left_off_where_it_would_change_what_is_trained(tiny_data, override, reason):
    cfg = config(tiny_data, Path("unused"), override)
    model = build_model(cfg.model, 3, cfg.data.image_hw, 3)
    splits = load_splits(cfg.data, cfg.seed)
    assert reason in featurecache.why_not(cfg, 0, model, splits)


def test_the_key_changes_with_the_backbones_weights_and_the_image_size(tiny_data):
    cfg = config(tiny_data, Path("unused"))
    split = load_splits(cfg.data, cfg.seed).train
    key = featurecache.feature_key(cfg, split, "weights-a")
    assert featurecache.feature_key(cfg, split, "weights-b") != key
    cfg.data.image_size = [48, 48]
    assert featurecache.feature_key(cfg, split, "weights-a") != key


def test_a_feature_split_takes_the_image_splits_samples_weights_and_order(tiny_data):
    cfg = config(tiny_data, Path("unused"))
    images = load_splits(cfg.data, cfg.seed).train
    features = FeatureSplit(
        "train", np.arange(len(images), dtype=np.float32)[:, None], images.labels, "k"
    )
    reading = Reading(cfg.data, seed=3, epoch=2, training=True, start_step=1)
    for pipeline in range(2):
        batching = Batching(4, 1, 2, pipeline)
        got, steps = features.source(batching, reading)
        want, want_steps = images.source(batching, reading)
        got, want = list(got.as_numpy_iterator()), list(want.take(len(got)).as_numpy_iterator())
        assert steps == want_steps and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert (a["id"], a["weight"], a["label"]) == (b["id"], b["weight"], b["label"])
            assert a["image"][0] == a["id"]  # the row of that sample


@pytest.mark.slow
def test_features_computed_by_two_workers_sum_to_those_of_one(tiny_data):
    cfg = config(tiny_data, Path("unused"))
    split = load_splits(cfg.data, cfg.seed).train
    tf.keras.utils.set_random_seed(0)
    model = build_model(cfg.model, 3, cfg.data.image_hw, 3)
    one, labels = featurecache.compute_features(model, split, Batching(8, 1, 1), cfg)
    parts = [featurecache.compute_features(model, split, Batching(8, 1, 2, p), cfg) for p in (0, 1)]
    np.testing.assert_allclose(parts[0][0] + parts[1][0], one, rtol=1e-5, atol=1e-6)
    assert np.array_equal(parts[0][1] + parts[1][1], labels)
    assert np.array_equal(labels, split.labels)
