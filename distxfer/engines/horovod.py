"""Horovod on Keras 3, written on `horovod.tensorflow` (its Keras layer is broken under Keras 3).

Gradients are summed with one grouped all-reduce per step inside the compiled step (optionally
compressed to float16 on the wire). Collectives on host values (`all_sum`) use the same
all-reduce; `broadcast` is an all-reduce in which only the chief contributes, which is exact.

`engine.collective_timeout_seconds` sets Horovod's own stall check (ranks that are alive but do
not submit a tensor the others wait for: a warning naming them, then a shutdown) and the gloo
transport timeout; an environment variable or horovodrun flag the user set wins. Frozen or
vanished ranks are named by `distxfer.engines.liveness`, whose watchdog comes first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from distxfer.engines.base import Engine, sum_by_dtype
from distxfer.engines.detect import Launch
from distxfer.errors import EngineError


def stall_settings(timeout: float) -> dict[str, str]:
    """Horovod's environment for a collective timeout of `timeout` seconds (0: Horovod's own)."""
    if not timeout:
        return {}
    return {
        "HOROVOD_STALL_CHECK_TIME_SECONDS": str(max(1, int(min(60, timeout / 2)))),
        "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": str(int(timeout)),
        # after the watchdog has had its chance to name the silent rank
        "HOROVOD_GLOO_TIMEOUT_SECONDS": str(int(timeout) + 30),
    }


class HorovodEngine(Engine):
    name = "horovod"

    def __init__(
        self, launch: Launch, *, fp16_allreduce: bool, reason: str, timeout: float = 0.0
    ) -> None:
        for name, value in stall_settings(timeout).items():
            os.environ.setdefault(name, value)  # read by hvd.init()
        hvd.init()
        if launch.size > 1 and hvd.size() != launch.size:
            # e.g. plain `srun` without --mpi=pmix: every process becomes an MPI world of its own.
            raise EngineError(
                f"Horovod sees {hvd.size()} process(es) but the launcher started {launch.size};"
                " under srun use --mpi=pmix, or start with horovodrun or mpirun"
            )
        # Horovod's world is the truth (the same as the launcher's wherever we can read that).
        place = replace(
            launch,
            rank=hvd.rank(),
            local_rank=hvd.local_rank(),
            size=hvd.size(),
            local_size=hvd.local_size(),
        )
        super().__init__(place, reason=reason)
        self._hvd = hvd
        self._compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none

    def reduce_gradients(self, grads: Sequence[Any]) -> list[Any]:
        if self.size == 1:
            return list(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = self._hvd.grouped_allreduce(
            [grads[i] for i in present], op=self._hvd.Sum, compression=self._compression
        )
        result = list(grads)
        for i, g in zip(present, summed):
            result[i] = g
        return result

    def all_sum(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = [np.asarray(v) for v in values]
        if self.size == 1 or not arrays:
            return arrays
        return sum_by_dtype(
            arrays,
            lambda group: self._hvd.grouped_allreduce(
                [tf.constant(a) for a in group], op=self._hvd.Sum
            ),
        )

    def sync_replica_state(self, variables: Sequence[Any]) -> None:
        state = [v for v in variables if not v.trainable and v.dtype.startswith("float")]
        if self.size == 1 or not state:
            return
        total = self.all_sum([np.asarray(v.numpy()) for v in state])
        for variable, value in zip(state, total):
            variable.assign(value / self.size)

    def shutdown(self) -> None:
        super().shutdown()
        self._hvd.shutdown()
