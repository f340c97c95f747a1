"""The compiled train and evaluation steps of one phase, for any engine.

A replica computes its loss as sum(weight * cross-entropy) / GLOBAL batch, so the gradients
summed over replicas are the mean over the global batch (see `distxfer.engines.base`). The
forward and backward pass may be XLA-compiled; the gradient all-reduce and the optimizer update
stay outside XLA, as Keras does under a strategy. Metrics are accumulated in-graph into
process-local float64 sums (loss, correct, top-k correct, count), read only when reported, so a
step does no Python work and fetches nothing.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from distxfer.engines import Engine

LOSS, CORRECT, TOPK, COUNT = range(4)
NUM_STATS = 4


def top_k_for(num_classes: int) -> int:
    """Top-5 accuracy where it means something (more than 5 classes), else none (0)."""
    return 5 if num_classes > 5 else 0


class PhaseSteps:
    """Train and eval functions bound to one model, optimizer and engine."""

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        engine: Engine,
        *,
        global_batch: int,
        num_classes: int,
        label_smoothing: float = 0.0,
        xla: bool = False,
        steps_per_execution: int = 1,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.engine = engine
        self.global_batch = global_batch
        self.num_classes = num_classes
        self.top_k = top_k_for(num_classes)
        self.label_smoothing = label_smoothing
        self.trainable = list(model.trainable_variables)
        self.train_stats = tf.Variable(tf.zeros([NUM_STATS], tf.float64), trainable=False)
        self.eval_stats = tf.Variable(tf.zeros([NUM_STATS], tf.float64), trainable=False)
        self.confusion = tf.Variable(
            tf.zeros([num_classes, num_classes], tf.float64), trainable=False
        )
        compute = (
            tf.function(self._forward_backward, jit_compile=True) if xla else self._forward_backward
        )
        self._compute = compute
        self._train_one = tf.function(self._train_one_step)
        self._train_many = tf.function(self._train_steps) if steps_per_execution > 1 else None
        self._eval_many = tf.function(self._eval_steps)

    # -- per replica -------------------------------------------------------------------------
    def _per_example_loss(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(logits, tf.float32)
        if self.label_smoothing:
            smooth = self.label_smoothing
            target = (
                tf.one_hot(labels, self.num_classes) * (1.0 - smooth) + smooth / self.num_classes
            )
            return tf.nn.softmax_cross_entropy_with_logits(target, logits)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)

    def _stats(
        self, labels: tf.Tensor, logits: tf.Tensor, per_example: tf.Tensor, weights: tf.Tensor
    ) -> tf.Tensor:
        mask = tf.cast(weights > 0, tf.float32)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32)
        if self.top_k:
            in_top = tf.cast(
                tf.math.in_top_k(labels, tf.cast(logits, tf.float32), self.top_k), tf.float32
            )
        else:
            in_top = tf.zeros_like(correct)
        sums = [
            tf.reduce_sum(per_example * mask),
            tf.reduce_sum(correct * mask),
            tf.reduce_sum(in_top * mask),
            tf.reduce_sum(mask),
        ]
        return tf.stack(sums)

    def _forward_backward(self, images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            per_example = self._per_example_loss(labels, logits)
            loss = tf.reduce_sum(per_example * weights) / self.global_batch
            if self.model.losses:
                loss += tf.add_n(self.model.losses) / self.engine.num_replicas
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable)
        return grads, self._stats(labels, logits, per_example, weights)

    def _replica_train(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        labels = tf.cast(batch["label"], tf.int32)
        grads, stats = self._compute(batch["image"], labels, batch["weight"])
        grads = self.engine.reduce_gradients(grads)
        self.optimizer.apply(grads, self.trainable)
        return stats

    def _replica_eval(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        labels = tf.cast(batch["label"], tf.int32)
        logits = self.model(batch["image"], training=False)
        per_example = self._per_example_loss(labels, logits)
        stats = self._stats(labels, logits, per_example, batch["weight"])
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        confusion = tf.math.confusion_matrix(
            labels,
            predicted,
            self.num_classes,
            weights=tf.cast(batch["weight"] > 0, tf.float32),
            dtype=tf.float32,
        )
        return stats, confusion

    # -- compiled, per process ---------------------------------------------------------------
    def _train_one_step(self, iterator: Any) -> None:
        stats = self.engine.run(self._replica_train, next(iterator))
        self.train_stats.assign_add(tf.cast(self.engine.local_sum(stats), tf.float64))

    def _train_steps(self, iterator: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            self._train_one_step(iterator)

    def _eval_steps(self, iterator: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            stats, confusion = self.engine.run(self._replica_eval, next(iterator))
            self.eval_stats.assign_add(tf.cast(self.engine.local_sum(stats), tf.float64))
            self.confusion.assign_add(tf.cast(self.engine.local_sum(confusion), tf.float64))

    # -- called by the loop ------------------------------------------------------------------
    def train(self, iterator: Any, count: int) -> None:
        """Run `count` training steps (at most steps_per_execution per compiled call)."""
        if self._train_many is None or count == 1:
            for _ in range(count):
                self._train_one(iterator)
        else:
            self._train_many(iterator, tf.constant(count, tf.int64))

    def evaluate(self, iterator: Any, steps: int) -> None:
        self.eval_stats.assign(tf.zeros_like(self.eval_stats))
        self.confusion.assign(tf.zeros_like(self.confusion))
        if steps:
            self._eval_many(iterator, tf.constant(steps, tf.int64))
