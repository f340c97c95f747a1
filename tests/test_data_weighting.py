"""Per-class loss weights (`data.class_weight`) from the config and the training class counts."""

from __future__ import annotations

import numpy as np
import pytest
from imagefiles import class_tree

from distxfer.config.schema import DataConfig
from distxfer.data.load import load_splits
from distxfer.data.weighting import class_weights
from distxfer.errors import ConfigError, DataError

NAMES = ("cat", "dog", "fox")


def test_balanced_weighs_classes_by_inverse_frequency_with_mean_one():
    counts = np.array([10, 30, 60])
    weights = class_weights("balanced", NAMES, counts)
    assert weights == pytest.approx((100 / 30, 100 / 90, 100 / 180))
    assert float(np.dot(weights, counts)) == pytest.approx(counts.sum())  # weighted mean 1


def test_a_mapping_names_classes_and_the_others_weigh_one():
    assert class_weights({"fox": 3.0}, NAMES, np.array([1, 1, 1])) == (1.0, 1.0, 3.0)
    assert class_weights(None, NAMES, np.array([1, 1, 1])) is None


def test_an_unknown_class_in_the_mapping_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"data.class_weight.foxes: no such class \(did you"):
        class_weights({"foxes": 2.0}, NAMES, np.array([1, 1, 1]))


def test_balanced_needs_every_class_count():
    with pytest.raises(DataError, match="data.class_weight: balanced needs .* fox has none"):
        class_weights("balanced", NAMES, np.array([4, 4, 0]))


def test_splits_carry_the_weights_of_the_training_class_counts(tmp_path):
    class_tree(tmp_path / "train", {"cat": 2, "dog": 6, "fox": 4})
    cfg = DataConfig(train_dir=str(tmp_path / "train"), class_weight="balanced", image_size=[8, 8])
    splits = load_splits(cfg, seed=0)
    assert list(splits.train.class_counts(3)) == [2, 6, 4]
    assert splits.class_weights == pytest.approx((2.0, 2 / 3, 1.0))
