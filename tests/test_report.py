"""Evaluation reports: balanced accuracy and per-class figures from a confusion matrix."""

import numpy as np
import pytest

from distxfer.report import balanced_accuracy, build_report, per_class, render_markdown

# rows: true class, columns: predicted; 90 cats (81 right), 10 dogs (2 right)
IMBALANCED = np.array([[81, 9], [8, 2]])


def test_balanced_accuracy_is_the_mean_recall_over_classes():
    assert balanced_accuracy(IMBALANCED) == pytest.approx((81 / 90 + 2 / 10) / 2)


def test_balanced_accuracy_sees_through_a_majority_class_that_plain_accuracy_rewards():
    always_cat = np.array([[90, 0], [10, 0]])
    assert np.trace(always_cat) / always_cat.sum() == pytest.approx(0.9)
    assert balanced_accuracy(always_cat) == pytest.approx(0.5)


def test_balanced_accuracy_leaves_out_classes_absent_from_the_split():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 4]])
    assert balanced_accuracy(confusion) == pytest.approx((3 / 4 + 1.0) / 2)


def test_per_class_gives_precision_recall_and_support_by_hand():
    cat, dog = per_class(IMBALANCED, ["cat", "dog"])
    assert cat["precision"] == pytest.approx(81 / 89) and cat["recall"] == pytest.approx(81 / 90)
    assert dog["precision"] == pytest.approx(2 / 11) and dog["support"] == 10


def test_the_report_and_its_markdown_show_balanced_accuracy():
    report = build_report({"accuracy": 0.83}, IMBALANCED, ["cat", "dog"], split="test")
    assert report["metrics"]["balanced_accuracy"] == pytest.approx(0.55)
    assert "- balanced_accuracy: 0.5500" in render_markdown(report)
