"""Exact evaluation on any engine: loss, accuracies (balanced accuracy too) and the confusion matrix
over a whole split.

Every pipeline feeds its share of the split in padded batches whose padding has weight 0, so
the sums over replicas and processes count each sample exactly once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from distxfer.config import DataConfig
from distxfer.data import Batching, Split
from distxfer.data.pipeline import eval_dataset
from distxfer.engines import Engine
from distxfer.report import balanced_accuracy
from distxfer.train.state import NUM_STATS
from distxfer.train.steps import batch_stats, metrics_from_stats, per_example_loss, top_k_for


@dataclass
class EvalResult:
    metrics: dict[str, float]
    confusion: np.ndarray  # [true, predicted] counts


class Evaluator:
    """Evaluates one model on any split: a compiled step summing statistics and a confusion
    matrix over this process's replicas, then a sum over processes."""

    def __init__(
        self,
        model: keras.Model,
        engine: Engine,
        batching: Batching,
        data: DataConfig,
        *,
        cache_dir: str | None = None,
    ) -> None:
        # One batch per replica per step: training's gradient accumulation does not apply here.
        self.batching = dataclasses.replace(batching, accumulation=1)
        self.model, self.engine, self.data = model, engine, data
        self.cache_dir = cache_dir
        self.num_classes = int(model.outputs[0].shape[-1])
        self.top_k = top_k_for(self.num_classes)
        self.stats = tf.Variable(tf.zeros([NUM_STATS], tf.float64), trainable=False)
        self.confusion = tf.Variable(tf.zeros([self.num_classes] * 2, tf.float64), trainable=False)
        self._many = tf.function(self._steps)
        self._pipelines: dict[int, tuple[Split, tf.data.Dataset, int]] = {}

    def __call__(self, split: Split, prefix: str = "") -> EvalResult:
        """Exact loss, accuracies (names prefixed) and confusion matrix over `split`."""
        dataset, count = self._pipeline(split)
        self.stats.assign(tf.zeros_like(self.stats))
        self.confusion.assign(tf.zeros_like(self.confusion))
        if count:
            self._many(iter(self.engine.distribute(dataset)), tf.constant(count, tf.int64))
        stats, confusion = self.engine.all_sum([self.stats.numpy(), self.confusion.numpy()])
        metrics = metrics_from_stats(stats, self.top_k, prefix)
        metrics[f"{prefix}balanced_accuracy"] = balanced_accuracy(confusion)
        return EvalResult(metrics, confusion)

    def _pipeline(self, split: Split) -> tuple[tf.data.Dataset, int]:
        """The split's evaluation pipeline and its steps, built once: it yields the same batches
        every time (in order, unaugmented), and building one costs about 0.2 s, which the
        validation at every epoch would otherwise pay again."""
        if id(split) not in self._pipelines:  # the split is kept, so its id stays its own
            built = eval_dataset(split, self.batching, cfg=self.data, cache_dir=self.cache_dir)
            self._pipelines[id(split)] = (split, *built)
        _, dataset, count = self._pipelines[id(split)]
        return dataset, count

    def _replica_step(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        labels = tf.cast(batch["label"], tf.int32)
        logits = self.model(batch["image"], training=False)
        losses = per_example_loss(labels, logits, self.num_classes)
        stats = batch_stats(labels, logits, losses, batch["weight"], self.top_k)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        real = tf.cast(batch["weight"] > 0, tf.float32)
        confusion = tf.math.confusion_matrix(
            labels, predicted, self.num_classes, weights=real, dtype=tf.float32
        )
        return stats, confusion

    def _steps(self, iterator: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            stats, confusion = self.engine.run(self._replica_step, next(iterator))
            self.stats.assign_add(tf.cast(self.engine.local_sum(stats), tf.float64))
            self.confusion.assign_add(tf.cast(self.engine.local_sum(confusion), tf.float64))
