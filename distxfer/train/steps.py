"""The compiled training step of one phase, for any engine, and the loss and statistics it sums.

A replica computes its loss as sum(weight * class weight * cross-entropy) / GLOBAL batch, so the
gradients summed over replicas are the mean over the global batch (see `distxfer.engines.base`)
and per-class loss weights (`data.class_weight`) are exact on any number of workers. With
gradient accumulation a replica adds up the gradients of `accumulation` micro-batches in a
loop inside the compiled step, then the step reduces and applies them once. The
forward and backward pass may be XLA-compiled; the gradient all-reduce and the optimizer update
stay outside XLA, as Keras does under a strategy. Metrics are accumulated in-graph into
process-local float64 sums (loss, correct, top-k correct, count), read only when reported, so a
step does no Python work and fetches nothing.

A replica whose loss is not finite (NaN or inf) contributes zero gradients, so every replica
still applies the same update and no collective is added; the step counts such replica batches
(`nonfinite`) and the call of the first one (`first_nonfinite`), which `distxfer.train.health`
reads at the loop's boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from distxfer.engines import Engine
from distxfer.train.state import NUM_STATS

LOSS, CORRECT, TOPK, COUNT = range(NUM_STATS)


def top_k_for(num_classes: int) -> int:
    """Top-5 accuracy where it means something (more than 5 classes), else none (0)."""
    return 5 if num_classes > 5 else 0


def metrics_from_stats(stats: np.ndarray, top_k: int, prefix: str = "") -> dict[str, float]:
    """Mean loss and accuracies from summed (loss, correct, top-k correct, count)."""
    count = max(float(stats[COUNT]), 1.0)
    metrics = {
        f"{prefix}loss": float(stats[LOSS]) / count,
        f"{prefix}accuracy": float(stats[CORRECT]) / count,
    }
    if top_k:
        metrics[f"{prefix}top{top_k}_accuracy"] = float(stats[TOPK]) / count
    return metrics


def per_example_loss(
    labels: tf.Tensor, logits: tf.Tensor, num_classes: int, label_smoothing: float = 0.0
) -> tf.Tensor:
    """Cross-entropy of each example, in float32 whatever the compute dtype."""
    logits = tf.cast(logits, tf.float32)
    if label_smoothing:
        target = tf.one_hot(labels, num_classes) * (1.0 - label_smoothing)
        return tf.nn.softmax_cross_entropy_with_logits(
            target + label_smoothing / num_classes, logits
        )
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


def weighted_loss(
    losses: tf.Tensor,
    weights: tf.Tensor,
    labels: tf.Tensor,
    class_weights: tf.Tensor | None,
    global_batch: int,
) -> tf.Tensor:
    """sum(weight * class weight of the label * loss) / global batch: this replica's share of
    the global step's mean loss."""
    if class_weights is not None:
        weights = weights * tf.gather(class_weights, labels)
    return tf.reduce_sum(losses * weights) / global_batch


def batch_stats(
    labels: tf.Tensor, logits: tf.Tensor, losses: tf.Tensor, weights: tf.Tensor, top_k: int
) -> tf.Tensor:
    """[loss, correct, top-k correct, count] summed over the real (weight > 0) examples."""
    mask = tf.cast(weights > 0, tf.float32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    correct = tf.cast(tf.equal(predicted, labels), tf.float32)
    if top_k:
        in_top = tf.math.in_top_k(labels, tf.cast(logits, tf.float32), top_k)
        in_top = tf.cast(in_top, tf.float32)
    else:
        in_top = tf.zeros_like(correct)
    sums = [
        tf.reduce_sum(losses * mask),
        tf.reduce_sum(correct * mask),
        tf.reduce_sum(in_top * mask),
        tf.reduce_sum(mask),
    ]
    return tf.stack(sums)


class TrainStep:
    """The compiled training step of one phase: model, optimizer and engine bound together."""

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        engine: Engine,
        *,
        global_batch: int,
        num_classes: int,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        accumulation: int = 1,
        xla: bool = False,
        steps_per_execution: int = 1,
        augment: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.engine = engine
        self.global_batch = global_batch  # samples per optimizer step, every micro-batch counted
        self.accumulation = accumulation
        weights = None if class_weights is None else tf.constant(class_weights, tf.float32)
        self.class_weights = weights
        self.num_classes = num_classes
        self.top_k = top_k_for(num_classes)
        self.label_smoothing = label_smoothing
        self.trainable = list(model.trainable_variables)
        self.stats = tf.Variable(tf.zeros([NUM_STATS], tf.float64), trainable=False)
        # seconds waiting for the input batch, and seconds of whole steps (see `_one_step`)
        self.timing = tf.Variable(tf.zeros([2], tf.float64), trainable=False)
        self.augment = augment  # data.augment_on: device
        # replica batches with a non-finite loss; this process's step count at the first one
        self.nonfinite = tf.Variable(tf.zeros([], tf.float64), trainable=False)
        self.first_nonfinite = tf.Variable(tf.constant(-1, tf.int64), trainable=False)
        self.calls = tf.Variable(tf.constant(0, tf.int64), trainable=False)
        compute = self._forward_backward
        self._compute = tf.function(compute, jit_compile=True) if xla else compute
        self._one = tf.function(self._one_step)
        self._many = tf.function(self._steps) if steps_per_execution > 1 else None

    def _forward_backward(self, images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            losses = per_example_loss(labels, logits, self.num_classes, self.label_smoothing)
            loss = weighted_loss(losses, weights, labels, self.class_weights, self.global_batch)
            if self.model.losses:  # weight penalties: once per step over replicas and micro-batches
                loss += tf.add_n(self.model.losses) / (self.engine.num_replicas * self.accumulation)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable)
        return grads, batch_stats(labels, logits, losses, weights, self.top_k)

    def _replica_step(self, batches: list[dict[str, tf.Tensor]]) -> tf.Tensor:
        grads, stats = self._accumulate(batches)
        finite = tf.math.is_finite(stats[LOSS])  # any micro-batch's loss non-finite: skip
        grads = _zero_unless(finite, grads)
        grads = self.engine.reduce_gradients(grads)
        self.optimizer.apply(grads, self.trainable)
        return tf.concat([stats, [1.0 - tf.cast(finite, tf.float32)]], 0)

    def _micro_batch(self, batch: dict[str, tf.Tensor]) -> tuple[list, tf.Tensor]:
        labels = tf.cast(batch["label"], tf.int32)
        images = batch["image"]
        if self.augment is not None and "augment" in batch:  # data.augment_on: device
            images = self.augment(images, batch["augment"])
        return self._compute(images, labels, batch["weight"])

    def _accumulate(self, batches: list[dict[str, tf.Tensor]]) -> tuple[list, tf.Tensor]:
        """Gradients and statistics summed over the step's micro-batches: the first computed
        directly (it tells which variables have gradients), the rest in a graph loop, so the
        graph and the live activations stay those of one micro-batch."""
        grads, stats = self._micro_batch(batches[0])
        if len(batches) == 1:
            return grads, stats
        rest = {k: tf.stack([b[k] for b in batches[1:]]) for k in batches[0]}
        present = [i for i, g in enumerate(grads) if g is not None]

        def add_one(i: tf.Tensor, summed: list, stats: tf.Tensor) -> tuple:
            more, more_stats = self._micro_batch({k: v[i] for k, v in rest.items()})
            summed = [a + tf.convert_to_tensor(more[j]) for a, j in zip(summed, present)]
            return i + 1, summed, stats + more_stats

        start = (tf.constant(0), [tf.convert_to_tensor(grads[j]) for j in present], stats)
        _, summed, stats = tf.while_loop(lambda i, *_: i < len(batches) - 1, add_one, start)
        for j, g in zip(present, summed):
            grads[j] = g
        return grads, stats

    def _one_step(self, iterator: Any) -> None:
        # Timestamps inside the compiled step: how long it waited for its input, and how long
        # it took in all, measured without fetching anything per step.
        started = tf.timestamp()
        with tf.control_dependencies([started]):
            batches = [next(iterator) for _ in range(self.accumulation)]
        with tf.control_dependencies(tf.nest.flatten(batches, expand_composites=True)):
            received = tf.timestamp()
        stats = self.engine.run(self._replica_step, batches)
        local = tf.cast(self.engine.local_sum(stats), tf.float64)
        update = self.stats.assign_add(local[:NUM_STATS])
        first = (local[NUM_STATS] > 0) & (self.first_nonfinite < 0)
        self.first_nonfinite.assign(tf.where(first, self.calls, self.first_nonfinite))
        self.nonfinite.assign_add(local[NUM_STATS])
        self.calls.assign_add(1)
        with tf.control_dependencies([update]):
            ended = tf.timestamp()
        self.timing.assign_add(tf.stack([received - started, ended - started]))

    def _steps(self, iterator: Any, count: tf.Tensor) -> None:
        for _ in tf.range(count):
            self._one_step(iterator)

    def run(self, iterator: Any, count: int) -> None:
        """Run `count` training steps (at most steps_per_execution per compiled call)."""
        if self._many is None or count == 1:
            for _ in range(count):
                self._one(iterator)
        else:
            self._many(iterator, tf.constant(count, tf.int64))


def _zero_unless(finite: tf.Tensor, grads: list[tf.Tensor | None]) -> list[tf.Tensor | None]:
    """`grads` if `finite`, else zeros of their shapes (no elementwise pass when finite)."""
    present = [g for g in grads if g is not None]
    kept = iter(tf.cond(finite, lambda: present, lambda: [tf.zeros_like(g) for g in present]))
    return [None if g is None else next(kept) for g in grads]
