"""Process-level TensorFlow set-up that must happen before TensorFlow starts its runtime."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from distxfer.errors import EngineError


def configure_devices(
    *, threads: int = 0, cpu_replicas: int = 0, gpu_index: int | None = None
) -> list[Any]:
    """Set thread counts, pin a GPU, turn on memory growth, split the CPU; return the visible GPUs.

    `gpu_index` pins one GPU per process (Horovod: the local rank). `cpu_replicas` > 1 splits a
    CPU-only machine into that many logical devices so MirroredStrategy has replicas to mirror.
    """
    try:
        if threads:  # intra-op: threads per op; inter-op: ops at once (each replica needs one)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(threads, cpu_replicas))
        gpus = tf.config.list_physical_devices("GPU")
        if gpu_index is not None and gpus:
            gpus = [gpus[gpu_index % len(gpus)]]
            tf.config.set_visible_devices(gpus, "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        if cpu_replicas > 1 and not gpus:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
            )
    except RuntimeError as exc:
        raise EngineError(
            f"TensorFlow's runtime was started before the engine could configure devices ({exc});"
            " create the engine before running any TensorFlow operation"
        ) from None
    return gpus
