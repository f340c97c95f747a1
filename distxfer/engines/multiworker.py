"""MultiWorkerMirroredStrategy: one process per node (or per GPU), collectives across processes.

TF_CONFIG comes from the environment, or is built for you under mpirun or srun (see
`distxfer.engines.tfconfig`). Cross-process sums (`all_sum`) run as a collective all-reduce in
which only each process's first local replica contributes its value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from distxfer.engines.base import sum_by_dtype
from distxfer.engines.detect import Launch
from distxfer.engines.tfdistribute import StrategyEngine
from distxfer.errors import EngineError

PACK_BYTES = 32 * 1024 * 1024
_IMPLEMENTATIONS = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}


class MultiWorkerEngine(StrategyEngine):
    name = "multiworker"

    def __init__(self, launch: Launch, *, collective: str, reason: str) -> None:
        # Pack the step's gradients into few all-reduces instead of one per variable.
        options = tf.distribute.experimental.CommunicationOptions(
            bytes_per_pack=PACK_BYTES, implementation=_IMPLEMENTATIONS[collective]
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        if strategy.num_replicas_in_sync % launch.size:
            raise EngineError(
                f"MultiWorkerMirroredStrategy has {strategy.num_replicas_in_sync} replicas, not a"
                f" multiple of the {launch.size} workers in TF_CONFIG; give every worker the"
                " same number of devices"
            )
        super().__init__(strategy, launch, reason=reason)
        # One trace per dtype: values are flattened into one vector of any length per call.
        self._sum_fn = tf.function(self._replica_sum, reduce_retracing=True)

    def _replica_sum(self, vector: tf.Tensor) -> tf.Tensor:
        local_replicas = self.local_replicas

        def contribute() -> tf.Tensor:
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group % local_replicas, 0)
            return context.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.where(first, vector, tf.zeros_like(vector))
            )

        return self.strategy.experimental_local_results(self.strategy.run(contribute))[0]

    def all_sum(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = [np.asarray(v) for v in values]
        if self.size == 1 or not arrays:
            return arrays
        return sum_by_dtype(arrays, self._sum_flat)

    def _sum_flat(self, group: list[np.ndarray]) -> list[np.ndarray]:
        flat = np.concatenate([a.ravel() for a in group])
        summed = np.asarray(self._sum_fn(tf.constant(flat)))
        bounds = np.cumsum([a.size for a in group])[:-1]
        return [part.reshape(a.shape) for part, a in zip(np.split(summed, bounds), group)]
