"""The evaluator: exact metrics over a split, its pipeline built once however often it runs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from imagefiles import class_tree

import distxfer.train.evaluate as evaluate
from distxfer.config.schema import DataConfig
from distxfer.data.layout import Batching
from distxfer.data.load import load_splits
from distxfer.engines.detect import Launch
from distxfer.engines.single import SingleEngine


@pytest.fixture
def builds(monkeypatch):
    """The splits the evaluator built a pipeline for, in order."""
    built = []

    def counted(split, *args, **kwargs):
        built.append(split)
        return real(split, *args, **kwargs)

    real = evaluate.eval_dataset
    monkeypatch.setattr(evaluate, "eval_dataset", counted)
    return built


def splits_and_evaluator(tmp_path):
    """7 training and 5 validation images in 3 classes, and an evaluator of a tiny model."""
    class_tree(tmp_path / "train", {"a": 3, "b": 2, "c": 2}, size=6)
    class_tree(tmp_path / "val", {"a": 2, "b": 2, "c": 1}, size=6, seed=1)
    cfg = DataConfig(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "val"))
    cfg.image_size = [6, 6]
    splits = load_splits(cfg, seed=0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    engine = SingleEngine(Launch("none"))
    return splits, evaluate.Evaluator(model, engine, Batching(2, 1, 1), cfg)


def test_repeated_evaluations_of_a_split_build_its_pipeline_once_and_agree(tmp_path, builds):
    splits, evaluator = splits_and_evaluator(tmp_path)
    first = evaluator(splits.val)
    again = evaluator(splits.val)
    assert builds == [splits.val]
    assert first.metrics == again.metrics
    assert np.array_equal(first.confusion, again.confusion)
    assert first.confusion.sum() == len(splits.val)  # every sample once, padding left out


def test_each_split_gets_its_own_pipeline(tmp_path, builds):
    splits, evaluator = splits_and_evaluator(tmp_path)
    on_val, on_train = evaluator(splits.val), evaluator(splits.train)
    assert builds == [splits.val, splits.train]
    assert on_val.confusion.sum() == len(splits.val)
    assert on_train.confusion.sum() == len(splits.train)
    assert evaluator(splits.val).metrics == on_val.metrics
    assert len(builds) == 2
