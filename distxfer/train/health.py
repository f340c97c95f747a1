"""Faults the loop looks for at its boundaries, agreed by every rank so all stop at one step.

- A loss that became NaN or infinite (`nonfinite_loss`): the step counts such replica batches
  in-graph and gives them zero gradients (`distxfer.train.steps`). With `error` the run stops
  naming the phase, epoch and step, before any later checkpoint is written, so the last one on
  disk holds the last good weights; with `skip` it logs them and goes on, until more than
  `nonfinite_skip_limit` batches were skipped (counted from the start of this process).
- Images the input pipeline could not decode (`distxfer.data.failures`): named in the log, and
  by `data.bad_files` left out (`skip`) or the run stopped naming them (`error`).
- A checkpoint the chief could not write (disk full, read-only): every rank stops with the
  chief's error, instead of the others waiting for it in a collective.

`check` is one small collective of counters read from variables, no per-step fetch; only when
something happened do more collectives follow (the names of the failed images, the message).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from distxfer.config import Config
from distxfer.data import failures
from distxfer.engines import Engine
from distxfer.errors import DataError, TrainingDiverged
from distxfer.train.phase import PhaseSetup
from distxfer.train.resume import RunCheckpoints
from distxfer.train.state import Position

log = logging.getLogger(__name__)
NONFINITE, UNDECODED, WRITE_FAILED, FIRST = range(4)  # FIRST: one slot per rank from here on


class RunHealth:
    """The run's checks for faults, in one agreed decision per boundary."""

    def __init__(self, config: Config, engine: Engine, checkpoints: RunCheckpoints) -> None:
        self.config, self.engine, self.checkpoints = config, engine, checkpoints
        self.skipped = 0  # replica batches left out for a non-finite loss, this process
        self._step = None  # the TrainStep whose counters were read last
        self._seen = 0.0  # its non-finite count summed over ranks at the last check

    def check(self, phase: PhaseSetup, position: Position) -> None:
        """Raise the same error on every rank if a fault happened since the last check."""
        step, engine = phase.step, self.engine
        if step is not self._step:
            self._step, self._seen = step, 0.0
        local = np.zeros(FIRST + engine.size)
        local[NONFINITE] = float(step.nonfinite.numpy())
        local[UNDECODED] = failures.pending()
        local[WRITE_FAILED] = float(self.checkpoints.write_failed())
        first = int(step.first_nonfinite.numpy())
        if first >= 0:  # the global step (counted from 1) of this rank's first one
            start = position.global_step - int(step.calls.numpy())
            local[FIRST + engine.rank] = start + first + 1
            step.first_nonfinite.assign(-1)
        total = engine.all_sum([local])[0]
        if total[WRITE_FAILED]:
            self.checkpoints.settle()  # raises the chief's error on every rank
        if total[UNDECODED]:
            self._undecoded()
        if total[NONFINITE] > self._seen:
            new = int(total[NONFINITE] - self._seen)
            self._seen = float(total[NONFINITE])
            bad = total[FIRST:]
            self._nonfinite(new, int(bad[bad > 0].min()), position)

    def _nonfinite(self, new: int, at: int, position: Position) -> None:
        index = position.phase
        epoch_start = position.global_step - position.step
        steps = self.checkpoints.epochs.steps(self.checkpoints.epochs.index(index, position.epoch))
        where = (
            f"at global step {at} (phase {index + 1} '{self.config.phases[index].name}',"
            f" epoch {position.epoch + 1}, step {at - epoch_start} of {steps})"
        )
        if self.config.nonfinite_loss == "skip":
            self.skipped += new
            limit = self.config.nonfinite_skip_limit
            if self.engine.is_chief:
                log.warning(
                    "the loss was NaN or infinite in %d batch(es) from %s; left out of the"
                    " update (%d so far, nonfinite_skip_limit=%d)",
                    new,
                    where,
                    self.skipped,
                    limit,
                )
            if self.skipped <= limit:
                return
            what = f"in {self.skipped} batches, more than nonfinite_skip_limit={limit}, last"
        else:
            what = "in a batch"
        message = None
        if self.engine.is_chief:
            self.checkpoints.wait()
            saved = self.checkpoints.store.steps()
            last = self.checkpoints.store.path_for(saved[-1]) if saved else None
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
            message = (
                f"the loss became NaN or infinite {what} {where}; {kept}; lower the learning"
                " rate, check the data, or set nonfinite_loss=skip to leave such batches out"
            )
        raise TrainingDiverged(self.engine.broadcast_object(message))

    def _undecoded(self) -> None:
        parts = self.engine.all_gather_object(failures.take())
        names = list(dict.fromkeys(name for part in parts for name in part))  # once per file
        details = [f"{name} {_reason(name)}".strip() for name in names]
        if self.config.data.bad_files == "skip":
            if self.engine.is_chief:
                for line in details:
                    log.warning("left out (data.bad_files=skip): %s", line)
            return
        raise DataError(
            f"{len(names)} image(s) could not be decoded during training, e.g. {details[0]};"
            " the quick scan reads only the ends of files: fix or remove them, set"
            " data.bad_files=skip to train without them, or data.scan=full to find them all"
            " before training",
            details=details,
        )


def _reason(name: str) -> str:
    if not os.path.isfile(name):
        return "cannot be decoded"
    from distxfer.data.fullscan import decode_error

    return decode_error(name)
