"""MultiWorkerMirroredStrategy: one process per node (or per GPU), collectives across processes.

TF_CONFIG comes from the environment, or is built for you under mpirun or srun (see
`distxfer.engines.tfconfig`). Cross-process sums (`all_sum`) run as a collective all-reduce in
which only each process's first local replica contributes its value.

`engine.collective_timeout_seconds` becomes the heartbeat timeout of TensorFlow's coordination
service (TensorFlow's default is 10 s), a little after distxfer's own watchdog
(`distxfer.engines.liveness`) names a silent rank. The per-collective `timeout_seconds` of
`CommunicationOptions` is left unset: TensorFlow starts a thread per collective for it.
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
HEARTBEAT_GRACE_SECONDS = 30  # TensorFlow's heartbeat check comes after distxfer's watchdog
_IMPLEMENTATIONS = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}


class MultiWorkerEngine(StrategyEngine):
    name = "multiworker"

    def __init__(
        self, launch: Launch, *, collective: str, reason: str, timeout: float = 0.0
    ) -> None:
        if timeout:
            configure_heartbeats(timeout + HEARTBEAT_GRACE_SECONDS)
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


def configure_heartbeats(timeout: float) -> None:
    """Configure the coordination service MultiWorkerMirroredStrategy would configure itself
    (same leader and jobs), with a heartbeat timeout of `timeout` seconds. Call it before the
    strategy is created; private TensorFlow API, checked by tests/test_engines_liveness.py."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()
    if resolver.task_type not in ("chief", "worker") or not spec.jobs:
        return
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
        for job in ("chief", "worker")
        if job in spec.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs,
        heartbeat_timeout_in_ms=int(timeout * 1000),
    )
