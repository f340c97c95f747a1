"""Step-level checkpoints: one file per checkpoint, written atomically, newest K kept plus the best.

A checkpoint is a single `.npz` holding the model's and the optimizer's variables (in their
deterministic order, with shapes checked on load) and a JSON `state`, the run's
`distxfer.train.state.RunState`: phase, epoch, step within the epoch, global step, the data order
(seed, global batch, dataset fingerprint) and the best validation metric so far. It is written
to a temporary file, flushed to disk, then renamed into place, so a crash at any moment leaves
either the old set of checkpoints or the new one, never a torn file. `best.npz` is a hard link
to the best checkpoint, replaced atomically; `phase_best.npz` likewise links the best epoch of
the current phase when that phase stops early and restores its best weights.

Only the chief writes. Writing happens on a background thread from a snapshot of the values,
so the accelerators do not wait for the disk; the next save (or `close`) waits for it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distxfer.atomic import fsync_dir, replacing
from distxfer.errors import CheckpointError, CheckpointWriteError
from distxfer.train.state import RunState

log = logging.getLogger(__name__)
_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")
BEST = "best.npz"
PHASE_BEST = "phase_best.npz"


@dataclass
class Snapshot:
    """The values of one checkpoint, in memory."""

    state: RunState
    model: list[np.ndarray]
    optimizer: list[np.ndarray]


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to `path` so that readers see the old file or the complete new one, on disk."""
    with replacing(path, sync=True) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file that is torn or damaged; an older one can be used instead."""


def read_snapshot(path: Path) -> Snapshot:
    """The checkpoint at `path`; UnreadableCheckpoint if it is damaged, CheckpointError if it
    was written by another distxfer version."""
    try:
        with np.load(path, allow_pickle=False) as data:
            record = json.loads(str(data["state"]))
            state = RunState.from_json(record, where=str(path.parent))
            model = [data[f"model/{i:05d}"] for i in range(record["num_model"])]
            optimizer = [data[f"optimizer/{i:05d}"] for i in range(record["num_optimizer"])]
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        RuntimeError,  # zipfile: a flipped flag bit reads as "encrypted"
        NotImplementedError,  # zipfile: a flipped compression method
        OverflowError,
        struct.error,
        zipfile.BadZipFile,  # also a CRC mismatch in any member
    ) as exc:
        raise UnreadableCheckpoint(f"checkpoint {path} cannot be read ({exc})") from None
    return Snapshot(state, model, optimizer)


class CheckpointStore:
    """The checkpoints of one run directory."""

    def __init__(self, directory: Path, *, keep: int, best_metric: str, writer: bool) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self.best_metric = best_metric
        self.writer = writer
        self._thread: threading.Thread | None = None
        self._error: tuple[BaseException, Path] | None = None
        if writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            for pattern in (".*.tmp-*", f".{BEST}.link-*"):  # left by a crash mid-write
                for stale in self.directory.glob(pattern):
                    stale.unlink(missing_ok=True)

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))
        )

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:09d}.npz"

    def latest(self) -> Snapshot | None:
        """The newest readable checkpoint (an unreadable newer one is reported and skipped);
        None if there is none. CheckpointError if every checkpoint is unreadable: a damaged run
        is never silently restarted from scratch over its own files."""
        steps = self.steps()
        for step in reversed(steps):
            try:
                return read_snapshot(self.path_for(step))
            except UnreadableCheckpoint as exc:
                log.warning("%s; using an older checkpoint", exc)
        if steps:
            raise CheckpointError(
                f"none of the {len(steps)} checkpoint(s) in {self.directory} can be read (damaged"
                " or truncated); to start this run afresh, move that folder away, or set a new"
                " output.run_dir",
                details=[str(self.path_for(step)) for step in steps],
            )
        return None

    def best(self) -> Snapshot | None:
        return self.linked(BEST)

    def linked(self, name: str) -> Snapshot | None:
        """The checkpoint linked as `name` (BEST or PHASE_BEST), if there is one."""
        path = self.directory / name
        return read_snapshot(path) if path.exists() else None

    def save(self, snapshot: Snapshot, *, is_best: bool, also_as: tuple[str, ...] = ()) -> Path:
        """Queue `snapshot` for writing (waits for the previous write first); link it as the best
        if `is_best`, and under each name in `also_as`."""
        self.wait()
        step = snapshot.state.global_step
        path = self.path_for(step)
        self._thread = threading.Thread(
            target=self._write,
            args=(snapshot, path, ((BEST,) if is_best else ()) + also_as),
            name="checkpoint-writer",
            daemon=False,
        )
        self._thread.start()
        return path

    def wait(self) -> None:
        """Block until the queued write is on disk; CheckpointWriteError if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (error, path), self._error = self._error, None
            reason = getattr(error, "strerror", None) or str(error)
            steps = self.steps()
            previous = f"{self.path_for(steps[-1])} is intact" if steps else "there is none yet"
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({reason}); the previous checkpoint"
                f" {previous}; free space or fix permissions in {self.directory}, then run the"
                " same command to resume"
            ) from error

    def failed(self) -> bool:
        """Whether the last queued write has ended with an error (`wait` raises it)."""
        thread = self._thread
        return self._error is not None and (thread is None or not thread.is_alive())

    def _write(self, snapshot: Snapshot, path: Path, links: tuple[str, ...]) -> None:
        try:
            record = {
                **snapshot.state.to_json(),
                "num_model": len(snapshot.model),
                "num_optimizer": len(snapshot.optimizer),
            }
            arrays = {"state": np.array(json.dumps(record))}
            arrays.update({f"model/{i:05d}": a for i, a in enumerate(snapshot.model)})
            arrays.update({f"optimizer/{i:05d}": a for i, a in enumerate(snapshot.optimizer)})
            write_npz_atomic(path, arrays)
            for name in links:
                link = self.directory / f".{name}.link-{os.getpid()}"
                link.unlink(missing_ok=True)
                os.link(path, link)
                os.replace(link, self.directory / name)
            if links:
                fsync_dir(self.directory)
            for old in self.steps()[: -self.keep]:
                self.path_for(old).unlink(missing_ok=True)
        except BaseException as exc:  # reported by the next wait()
            self._error = (exc, path)


def check_fits(
    arrays: Sequence[np.ndarray], variables: Sequence[Any], kind: str, where: str
) -> None:
    """Raise CheckpointError unless the arrays fit these variables one to one."""
    if len(arrays) != len(variables):
        raise CheckpointError(
            f"the checkpoint in {where} holds {len(arrays)} {kind} variables but this run has"
            f" {len(variables)}; it was written by a different model or phase set-up: use a new"
            " output.run_dir"
        )
    for array, variable in zip(arrays, variables):
        if tuple(array.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"the checkpoint in {where}: {kind} variable {variable.path} has shape"
                f" {tuple(variable.shape)} here but {tuple(array.shape)} in the checkpoint: use a"
                " new output.run_dir"
            )
