"""What MirroredStrategy and MultiWorkerMirroredStrategy engines share: a tf.distribute strategy.

The optimizer's `apply` sums gradients across replicas itself when called in replica context
(Keras 3's TensorFlow optimizer all-reduces with SUM), so `reduce_gradients` leaves them alone.
Keras 3 variables such as BatchNorm moving statistics are created with aggregation NONE: each
replica assigns its own value, and `sync_replica_state` averages them back into agreement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from distxfer.engines.base import Engine
from distxfer.engines.detect import Launch


class StrategyEngine(Engine):
    """An engine whose replicas are driven by a `tf.distribute.Strategy`."""

    def __init__(self, strategy: tf.distribute.Strategy, launch: Launch, *, reason: str) -> None:
        local_replicas = strategy.num_replicas_in_sync // launch.size
        super().__init__(launch, local_replicas=local_replicas, reason=reason)
        self.strategy = strategy

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.strategy.scope()

    def distribute(self, dataset: tf.data.Dataset) -> Any:
        # Our datasets are already this process's shard, batched per replica; the strategy hands
        # consecutive batches to its local replicas.
        return self.strategy.distribute_datasets_from_function(lambda _context: dataset)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.strategy.run(fn, args=args)

    def local_sum(self, value: Any) -> Any:
        parts = self.strategy.experimental_local_results(value)
        return tf.nest.map_structure(lambda *xs: tf.add_n(list(xs)), *parts)

    def sync_replica_state(self, variables: Sequence[Any]) -> None:
        state = [v for v in variables if not v.trainable and v.dtype.startswith("float")]
        if not state:
            return
        local = [
            sum(t.numpy() for t in self.strategy.experimental_local_results(_tf_variable(v)))
            for v in state
        ]
        total = self.all_sum(local)
        for variable, value in zip(state, total):
            variable.assign(value / self.num_replicas)


def _tf_variable(variable: Any) -> Any:
    """The tf.Variable behind a Keras 3 variable (the distributed one under a strategy)."""
    return getattr(variable, "value", variable)
