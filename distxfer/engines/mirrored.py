"""MirroredStrategy: one process driving every local GPU (or logical CPU devices) as replicas."""

from __future__ import annotations

import tensorflow as tf

from distxfer.engines.detect import Launch
from distxfer.engines.tfdistribute import StrategyEngine


class MirroredEngine(StrategyEngine):
    name = "mirrored"

    def __init__(self, launch: Launch, *, gpus: list, reason: str) -> None:
        if gpus:
            devices = [f"/gpu:{i}" for i in range(len(gpus))]
            cross_device_ops = None  # NCCL all-reduce, TensorFlow's default across GPUs
        else:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            cross_device_ops = tf.distribute.ReductionToOneDevice(reduce_to_device="/cpu:0")
        strategy = tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=cross_device_ops
        )
        super().__init__(strategy, launch, reason=reason)
