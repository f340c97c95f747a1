"""The one interface every input kind has (`Split`): a new kind is one class."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from distxfer.config.schema import DataConfig  # noqa: E402
from distxfer.data import Batching, FolderSplit, RecordSplit, Split  # noqa: E402
from distxfer.data.layout import sample_plan  # noqa: E402
from distxfer.data.pipeline import eval_dataset, train_dataset  # noqa: E402
from distxfer.data.plan import steps_per_epoch  # noqa: E402


class ArraySplit(Split):
    """Decoded images held in memory: a third kind, written only against the interface."""

    order_depends_on_workers = False

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.name, self.images, self.labels = "arrays", images, labels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def fingerprint(self) -> str:
        return str(hash(self.images.tobytes()))

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def epoch_steps(self, batching, *, seed, epoch, shuffle, training=True) -> int:
        return steps_per_epoch(len(self), batching.global_batch)

    def source(self, batching, reading):
        plan = sample_plan(len(self), batching, reading)
        entries = {
            "id": plan.indices,
            "weight": plan.weights,
            "label": self.labels[plan.indices],
            "image": self.images[plan.indices],
        }
        return tf.data.Dataset.from_tensor_slices(entries), plan.steps


def test_a_new_input_kind_is_one_class_the_pipeline_batches_like_the_others():
    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    split = ArraySplit(images, np.array([0, 1, 0, 1, 1], np.int32))
    cfg = DataConfig(image_size=[4, 4])
    dataset, steps = train_dataset(split, Batching(2, 1, 1), cfg=cfg, seed=0, epoch=0)
    batches = list(dataset.as_numpy_iterator())
    assert steps == 3 == split.epoch_steps(Batching(2, 1, 1), seed=0, epoch=0, shuffle=True)
    real = [(i, img) for b in batches for i, w, img in zip(b["id"], b["weight"], b["image"]) if w]
    assert sorted(i for i, _ in real) == [0, 1, 2, 3, 4]
    assert all(np.array_equal(img, images[i]) for i, img in real)
    evaluated, count = eval_dataset(split, Batching(2, 1, 1), cfg=cfg)
    assert count == 3 and len(list(evaluated)) == 3


def test_only_record_splits_tie_the_sample_order_to_the_worker_count():
    assert RecordSplit.order_depends_on_workers and not FolderSplit.order_depends_on_workers


def test_the_bad_file_scan_reads_folder_files_only():
    folder = FolderSplit("t", ("a.png", "b.png"), np.zeros(2, np.int32), np.ones(2), np.ones(2))
    records = RecordSplit("t", ("r.tfrecord",), (2,), (1, 1))
    assert folder.files_to_scan() == ("a.png", "b.png") and records.files_to_scan() == ()
    assert folder.without({"a.png"}).paths == ("b.png",) and records.without({"x"}) is records
