"""The one seam between the trainer and a distributed engine.

The trainer asks an `Engine` where it runs (rank, size, replicas, chief), builds variables in its
`scope`, feeds it per-process datasets, runs the per-replica step through `run`, and uses its
collectives. It never asks which engine it is. Conventions shared by every engine:

- The per-replica loss is divided by the GLOBAL batch; gradients are SUMMED over all replicas
  before they are applied (`reduce_gradients` does it where the optimizer does not).
- `local_sum` adds up per-replica values of this process, inside a compiled function, with no
  communication; `all_sum` adds up values across processes, eagerly, and every process must
  call it at the same point (it is a collective).
- `broadcast` and `broadcast_object` hand the chief's values to every process, and
  `all_gather_object` every process's value to all (collectives too).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from distxfer.engines.detect import Launch


class Engine:
    """Where this process runs and how its replicas talk to each other.

    The defaults are those of one process with one replica; engines override what differs.
    """

    name: str = "engine"

    def __init__(self, launch: Launch, *, local_replicas: int = 1, reason: str = "") -> None:
        self.launch = launch  # this process's place, as its launcher started it
        self.local_replicas = local_replicas  # replicas (devices) driven by this process
        self.reason = reason  # why this engine was chosen, for the log
        self._watchdog: Any = None  # distxfer.engines.liveness.Watchdog, once `watch` started it

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def local_rank(self) -> int:
        return self.launch.local_rank

    @property
    def size(self) -> int:
        """Processes."""
        return self.launch.size

    @property
    def num_replicas(self) -> int:
        return self.size * self.local_replicas

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return (
            f"{self.name}: {self.size} process(es) x {self.local_replicas} replica(s)"
            f" = {self.num_replicas} replica(s)"
        )

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which the model and optimizer variables are created."""
        return contextlib.nullcontext()

    def distribute(self, dataset: Any) -> Iterable[Any]:
        """Turn this process's dataset (batched per replica) into what `run` consumes."""
        return dataset

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on every local replica (inside a compiled function)."""
        return fn(*args)

    def reduce_gradients(self, grads: Sequence[Any]) -> list[Any]:
        """Gradients summed over every replica, unless the optimizer's apply will sum them."""
        return list(grads)

    def local_sum(self, value: Any) -> Any:
        """Sum of a per-replica value (or nest of them) over this process's replicas."""
        return value

    def all_sum(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Element-wise sum of each array across processes (a collective)."""
        return [np.asarray(v) for v in values]

    def broadcast(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The chief's arrays, on every process (a collective; shapes must match everywhere).

        A sum to which only the chief contributes: x + 0 + ... + 0 is exactly x.
        """
        arrays = [np.asarray(v) for v in values]
        if self.size == 1:
            return arrays
        return self.all_sum([a if self.is_chief else np.zeros_like(a) for a in arrays])

    def broadcast_object(self, obj: Any) -> Any:
        """The chief's JSON-serialisable object, on every process (a collective)."""
        if self.size == 1:
            return obj
        payload = json.dumps(obj).encode() if self.is_chief else b""
        length = int(self.broadcast([np.array([len(payload)], dtype=np.float64)])[0][0])
        data = np.frombuffer(payload, dtype=np.uint8).astype(np.float32) if self.is_chief else None
        data = self.broadcast([data if data is not None else np.zeros(length, dtype=np.float32)])[0]
        return json.loads(bytes(data.astype(np.uint8)).decode())

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every process's JSON-serialisable object, in rank order, on every process (a
        collective): each process's bytes fill its own slice of one summed buffer."""
        if self.size == 1:
            return [obj]
        payload = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
        lengths = np.zeros(self.size, dtype=np.float64)
        lengths[self.rank] = len(payload)
        lengths = self.all_sum([lengths])[0].astype(np.int64)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        buffer = np.zeros(int(bounds[-1]), dtype=np.float32)
        buffer[bounds[self.rank] : bounds[self.rank + 1]] = payload
        buffer = self.all_sum([buffer])[0]
        return [
            json.loads(bytes(buffer[a:b].astype(np.uint8)).decode())
            for a, b in zip(bounds[:-1], bounds[1:])
        ]

    def sync_replica_state(self, variables: Sequence[Any]) -> None:
        """Average state that replicas update on their own (BatchNorm moving statistics)."""

    def barrier(self) -> None:
        """Return once every process got here."""
        if self.size > 1:
            self.all_sum([np.zeros(1, dtype=np.float32)])

    def watch(self, timeout: float) -> None:
        """Stop every rank, naming the one that stopped answering, once a rank has been silent
        for `timeout` seconds (0: never); see `distxfer.engines.liveness`. A collective."""
        if self.size > 1 and timeout:
            from distxfer.engines.liveness import start_watchdog

            self._watchdog = start_watchdog(self, timeout)

    def shutdown(self) -> None:
        """Release the engine's resources at the end of a run."""
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None


def sum_by_dtype(
    arrays: Sequence[np.ndarray], summer: Callable[[list[np.ndarray]], list[np.ndarray]]
) -> list[np.ndarray]:
    """Apply a batched collective `summer` once per dtype (batched all-reduces need one dtype)."""
    groups: dict[str, list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault(array.dtype.str, []).append(index)
    result: list[np.ndarray] = [np.empty(0)] * len(arrays)
    for indices in groups.values():
        for index, summed in zip(indices, summer([arrays[i] for i in indices])):
            result[index] = np.asarray(summed)
    return result
