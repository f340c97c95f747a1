"""A run's checkpoints as the loop uses them: resuming from the newest, writing new ones, and
the best validation metric so far.

Only the chief reads and writes the run directory. What it finds when a run starts (the state,
or the problem that stops the run) is broadcast, so every rank resumes at the same step or every
rank stops with the same error; the arrays are broadcast too, so other ranks need no shared file
system to train. Every method but `resume_position` and `wait` is a collective, as is
`broadcast_variables`: every rank calls it at the same point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from distxfer.checkpoint import PHASE_BEST, CheckpointStore, Snapshot, check_fits
from distxfer.config import OutputConfig
from distxfer.engines import Engine
from distxfer.errors import CheckpointError, CheckpointWriteError
from distxfer.train.epochs import Epochs
from distxfer.train.phase import PhaseSetup
from distxfer.train.state import (
    NUM_STATS,
    BestMetric,
    CheckpointReason,
    Patience,
    Position,
    RunState,
    same_samples,
)
from distxfer.train.stopping import StopRequest

log = logging.getLogger(__name__)


class RunCheckpoints:
    """The checkpoints of one run directory, seen alike by every rank."""

    def __init__(
        self,
        run_dir: Path,
        output: OutputConfig,
        engine: Engine,
        epochs: Epochs,
        clock: StopRequest,
    ) -> None:
        self.engine, self.epochs, self.clock = engine, epochs, clock
        self.store = CheckpointStore(
            Path(run_dir) / "checkpoints",
            keep=output.keep_checkpoints,
            best_metric=output.best_metric,
            writer=engine.is_chief,
        )
        self.best_metric = output.best_metric
        self.best: BestMetric | None = None
        self.resumed: RunState | None = None  # the state the run continues from
        self._arrays: Snapshot | None = None  # its arrays, on the chief, until restored

    # -- resuming ----------------------------------------------------------------------------
    def agree(self) -> RunState | None:
        """The chief's newest readable checkpoint state, on every rank; None for a fresh run.
        Where to continue from it is `resume_position`."""
        snapshot, problem = None, None
        if self.engine.is_chief:
            try:
                snapshot = self.store.latest()
            except CheckpointError as exc:
                problem = str(exc)
        record = snapshot.state.to_json() if snapshot else None
        shared = self.engine.broadcast_object({"problem": problem, "state": record})
        if shared["problem"]:
            raise CheckpointError(shared["problem"])
        if shared["state"] is not None:
            self.resumed = RunState.from_json(shared["state"], str(self.store.directory))
            self.best, self._arrays = self.resumed.best, snapshot
        return self.resumed

    def resume_position(self) -> Position:
        """Where to continue: the saved position, or the start of its epoch where the saved step
        no longer covers the same samples (see `same_samples`); the log says which."""
        assert self.resumed is not None, "resume_position() needs a checkpoint found by agree()"
        saved, order = self.resumed.data, self.epochs.order()
        if saved.train_fingerprint != order.train_fingerprint:
            log.warning(
                "the training data changed since the checkpoint was written; continuing with"
                " the new data"
            )
        saved_at = self.resumed.position
        exact, why = same_samples(saved, order, self.epochs.split.order_depends_on_workers)
        position = replace(saved_at)
        if position.step and not exact:
            log.warning(
                "%s: epoch %d restarts from its first step, with the model and optimizer of step"
                " %d (the %d steps it had done in this epoch are trained again)",
                why,
                position.epoch + 1,
                saved_at.global_step,
                position.step,
            )
            position.step = 0
        elif why and exact:
            log.info("%s: it resumes at the same step", why)
        elif why:
            log.info("%s; the checkpoint is at the start of an epoch, so nothing restarts", why)
        log.info(
            "resuming from step %d (phase %d, epoch %d, step %d of the epoch)",
            saved_at.global_step,
            saved_at.phase + 1,
            saved_at.epoch + 1,
            saved_at.step,
        )
        return position

    def restore(self, model: Sequence[Any], optimizer: Sequence[Any] = ()) -> None:
        """Load the resumed checkpoint into every rank's model variables (and optimizer
        variables, if given); a checkpoint that does not fit stops every rank alike."""
        snapshot, where = self._arrays, str(self.store.directory)
        problem = None
        if self.engine.is_chief:
            assert snapshot is not None, "restore() needs a checkpoint found by agree()"
            try:
                check_fits(snapshot.model, model, "model", where)
                if optimizer:
                    check_fits(snapshot.optimizer, optimizer, "optimizer", where)
            except CheckpointError as exc:
                problem = str(exc)
        problem = self.engine.broadcast_object(problem)
        if problem:
            raise CheckpointError(problem)
        variables = [*model, *optimizer]
        if snapshot is not None:
            arrays = snapshot.model + (snapshot.optimizer if optimizer else [])
        else:
            arrays = [np.zeros(v.shape, v.dtype) for v in variables]
        assign(variables, self.engine.broadcast(arrays))
        self._arrays = None

    def restore_phase(self, model: Sequence[Any], phase: PhaseSetup, *, mid_epoch: bool) -> None:
        """Restore the phase the run resumes in: the model, the optimizer if the checkpoint holds
        this phase's, and mid-epoch the epoch's training sums so far (carried by the chief)."""
        state = self.resumed
        assert state is not None, "restore_phase() needs a checkpoint found by agree()"
        self.restore(model, phase.optimizer.variables if state.has_optimizer else [])
        if mid_epoch:
            saved = state.epoch_stats if self.engine.is_chief else [0.0] * NUM_STATS
            phase.step.stats.assign(np.asarray(saved))

    # -- writing -----------------------------------------------------------------------------
    def save(
        self,
        position: Position,
        reason: CheckpointReason,
        model: Sequence[Any],
        phase: PhaseSetup,
        *,
        finished: bool = False,
        metrics: dict[str, float] | None = None,
        patience: Patience | None = None,
        phase_best: bool = False,
    ) -> Path | None:
        """Every rank calls this at the same step (it sums the epoch's training statistics, and
        `metrics` may set a new best); the chief queues the checkpoint and returns its path.
        `patience` is the phase's early stopping so far; `phase_best` links the checkpoint as
        the phase's best epoch. A write that failed stops every rank alike, here or (the run's
        last one) at once."""
        self.settle()
        stats = phase.step.stats
        epoch_stats = (
            self.engine.all_sum([stats.numpy()])[0] if position.step else np.zeros(NUM_STATS)
        )
        is_best = self._improves_best(metrics, position.global_step)
        if not self.engine.is_chief:
            if finished or reason in ("signal", "time"):
                self.settle()
            return None
        state = RunState(
            replace(position),
            reason,
            finished,
            optimizer_phase=-1 if finished else position.phase,
            data=self.epochs.order(),
            best=self.best,
            train_seconds=self.train_seconds(),
            epoch_stats=[float(x) for x in epoch_stats],
            model_names=[v.path for v in model],
            patience=replace(patience) if patience else None,
        )
        arrays = [[np.asarray(v.numpy()) for v in vs] for vs in (model, phase.optimizer.variables)]
        links = (PHASE_BEST,) if phase_best else ()
        path = self.store.save(Snapshot(state, *arrays), is_best=is_best, also_as=links)
        if finished or reason in ("signal", "time"):  # the run ends here: know it is on disk
            self.settle()
        return path

    def restore_phase_best(self, model: Sequence[Any], patience: Patience) -> None:
        """Load the weights of the phase's best epoch (the checkpoint linked as its best) into
        every rank's model; a collective, like `restore`."""
        self.settle()  # the best epoch's checkpoint may still be being written
        arrays, problem = None, None
        if self.engine.is_chief:
            try:
                best = self.store.linked(PHASE_BEST)
                if best is None or best.state.global_step != patience.best_step:
                    raise CheckpointError(
                        f"the checkpoint of step {patience.best_step} (the best epoch of phase"
                        f" {patience.phase + 1}) is not {self.store.directory / PHASE_BEST};"
                        " set early_stopping.restore_best: false to go on from the last weights"
                    )
                check_fits(best.model, model, "model", str(self.store.directory))
                arrays = best.model
            except CheckpointError as exc:
                problem = str(exc)
        problem = self.engine.broadcast_object(problem)
        if problem:
            raise CheckpointError(problem)
        zeros = [np.zeros(v.shape, v.dtype) for v in model]
        assign(model, self.engine.broadcast(arrays if arrays is not None else zeros))
        log.info("phase %d ends on the weights of step %d", patience.phase + 1, patience.best_step)

    def train_seconds(self) -> float:
        """Seconds spent training, over every resumption of the run."""
        before = self.resumed.train_seconds if self.resumed is not None else 0.0
        return before + self.clock.elapsed()

    def _improves_best(self, metrics: dict[str, float] | None, global_step: int) -> bool:
        if not metrics or self.best_metric not in metrics:
            return False
        value = metrics[self.best_metric]
        if self.best is not None and not self.best.beaten_by(value):
            return False
        self.best = BestMetric(self.best_metric, value, global_step)
        return True

    def wait(self) -> None:
        """Until the queued checkpoint is on disk (its error, if any, is raised here)."""
        self.store.wait()

    def settle(self) -> None:
        """Wait for the chief's queued write; if it failed, every rank raises its error (a
        collective)."""
        problem = None
        if self.engine.is_chief:
            try:
                self.store.wait()
            except CheckpointWriteError as exc:
                problem = str(exc)
        problem = self.engine.broadcast_object(problem)
        if problem:
            raise CheckpointWriteError(problem)

    def write_failed(self) -> bool:
        """Whether the chief's last write has failed (False elsewhere; never waits)."""
        return self.engine.is_chief and self.store.failed()


def broadcast_variables(engine: Engine, variables: Sequence[Any]) -> None:
    """Give every rank the chief's values (the same initial weights everywhere)."""
    if engine.size > 1:
        assign(variables, engine.broadcast([np.asarray(v.numpy()) for v in variables]))


def assign(variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
