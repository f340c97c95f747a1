"""The training loop: phases of epochs of compiled steps, on any engine, resumable at any step.

    trainer = Trainer(config, engine, splits, run_dir, hooks)
    outcome = trainer.fit()          # Outcome.FINISHED, TIME (budget spent) or SIGNAL (preempted)

Loop control only: when to log, checkpoint, validate and stop. Phases are set up by `.phase`,
steps computed by `.steps` and `.evaluate`, checkpoints recorded by `.state` and `.resume`;
what is shown or written around the loop hangs off hooks. Every collective is called by every
rank at the same global step, which the step counts alone decide."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from distxfer.config import Config
from distxfer.data import DataSplits, make_batching
from distxfer.engines import Engine
from distxfer.models import batchnorm_statistics, build_model, check_phases
from distxfer.train.early_stopping import EarlyStopping
from distxfer.train.epochs import Epochs
from distxfer.train.evaluate import EvalResult, Evaluator
from distxfer.train.featurecache import ImageInputs, phase_inputs
from distxfer.train.health import RunHealth
from distxfer.train.hooks import Hook
from distxfer.train.phase import PhaseSetup, set_up_phase
from distxfer.train.resume import RunCheckpoints, broadcast_variables
from distxfer.train.state import NUM_STATS, CheckpointReason, Outcome, Position
from distxfer.train.steps import metrics_from_stats
from distxfer.train.stopping import StopRequest
from distxfer.train.throughput import Throughput

log = logging.getLogger(__name__)


class Trainer:
    """Runs a config's phases on an engine, checkpointing into `run_dir`."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        splits: DataSplits,
        run_dir: Path,
        hooks: list[Hook] | None = None,
        *,
        cache_dir: str | None = None,
    ) -> None:
        assert splits.train is not None, "a Trainer needs a training split"
        self.config, self.engine, self.splits = config, engine, splits
        self.run_dir, self.hooks = Path(run_dir), hooks or []
        data = config.data
        self.batching = make_batching(data, engine.local_replicas, engine.size, engine.rank)
        self.epochs = Epochs(config, splits.train, self.batching, cache_dir)
        self.epochs.steps(0)  # data that cannot be laid out over the workers fails now
        self.stopper = StopRequest(config.max_train_seconds)
        self.checkpoints = RunCheckpoints(
            self.run_dir, config.output, engine, self.epochs, self.stopper
        )
        keras.config.set_dtype_policy(config.precision)  # before building: layers take it
        with engine.scope():
            keras.utils.set_random_seed(config.seed)
            self.model = build_model(config.model, splits.num_classes, data.image_hw, data.channels)
        check_phases(self.model, config.phases)  # a phase-2 typo stops the run before phase 1
        self.health = RunHealth(config, engine, self.checkpoints)
        self.evaluate = Evaluator(self.model, engine, self.batching, data, cache_dir=cache_dir)
        self.images = ImageInputs(self.model, self.epochs, self.evaluate, splits.val)
        self.inputs = self.images  # what the current phase reads (set by _begin_phase)
        self.throughput = Throughput(engine.num_replicas)
        train_bn = config.model.batchnorm == "train"
        self.bn_state = batchnorm_statistics(self.model) if train_bn else []
        self.position = Position()
        self.phase: PhaseSetup  # set by _begin_phase
        self.early: EarlyStopping  # set by _begin_phase
        self.final_results: dict[str, EvalResult] = {}

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> Outcome:
        """Train every remaining phase, then evaluate the final weights (unless preempted)."""
        resumed = self.checkpoints.agree()
        if resumed is not None:
            self.position = self.checkpoints.resume_position()
        self._fire("on_train_begin")
        if resumed is not None and resumed.finished:
            at = self.position.global_step
            log.info("the run in %s already finished at step %d", self.run_dir, at)
            self._begin_phase(len(self.config.phases) - 1)
            self.checkpoints.restore(self.model.variables)
            outcome = Outcome.FINISHED
        else:
            outcome = self._train_phases()
        if outcome is not Outcome.SIGNAL:
            self.final_results = self._final_evaluation()
            self.health.check(self.phase, self.position)  # images that failed in evaluation
        self._fire("on_train_end", outcome)
        return outcome

    def _train_phases(self) -> Outcome:
        resumed_phase = self.position.phase if self.checkpoints.resumed else None
        self.stopper.install()
        try:
            for index in range(self.position.phase, len(self.config.phases)):
                stopped = self._run_phase(index, resuming=index == resumed_phase)
                if stopped is not None:
                    return stopped
            self._checkpoint("final", finished=True)
            return Outcome.FINISHED
        finally:
            self.stopper.uninstall()
            self.checkpoints.wait()

    def _run_phase(self, index: int, *, resuming: bool) -> Outcome | None:
        """Run the phase's remaining epochs; the outcome if the ranks agreed to stop early."""
        phase = self.config.phases[index]
        self._begin_phase(index)
        if resuming:
            self.checkpoints.restore_phase(
                self.model.variables, self.phase, mid_epoch=self.position.step > 0
            )
        elif index == 0:
            broadcast_variables(self.engine, self.model.variables)
        self._fire("on_phase_begin", index, phase)
        for epoch in range(self.position.epoch, phase.epochs):
            if self.early.stopped:
                break
            self.position.epoch = epoch
            stopped = self._train_epoch(index, epoch)
            if stopped is not None:
                return stopped
            metrics = self._end_epoch(index, epoch)
            best = self.early.update(metrics, self.position.global_step)
            self._checkpoint("epoch", metrics=metrics, phase_best=best and self.early.keeps_best)
        self._end_phase(index)
        return None

    def _begin_phase(self, index: int) -> None:
        self.inputs = phase_inputs(  # images, or the frozen backbone's cached features
            self.config, index, self.model, self.engine, self.splits, self.batching, self.images
        )
        weights = self.splits.class_weights
        self.phase = set_up_phase(
            self.config,
            index,
            self.model,
            self.engine,
            self.epochs,
            weights,
            step_model=self.inputs.model,
        )
        resumed = self.checkpoints.resumed
        patience = resumed.patience if resumed is not None else None
        phase = self.config.phases[index]
        self.early = EarlyStopping(phase, index, self.splits.num_classes, patience)

    def _end_phase(self, index: int) -> None:
        """Go on from the phase's best epoch if early stopping says so, then to the next phase."""
        state, at = self.early.state, self.position.global_step
        if self.early.keeps_best and state is not None and 0 <= state.best_step != at:
            self.checkpoints.restore_phase_best(self.model.variables, state)
        self.position = Position(index + 1, 0, 0, at)

    def _train_epoch(self, index: int, epoch: int) -> Outcome | None:
        """Train to the end of the epoch; the outcome if the ranks agreed to stop first."""
        start = self.position.step
        dataset, steps = self.inputs.dataset(self.epochs.index(index, epoch), start)
        steps += start
        iterator = iter(self.engine.distribute(dataset))
        if start == 0:
            self.phase.step.stats.assign(np.zeros(NUM_STATS))
        self._fire("on_epoch_begin", epoch, steps, start)
        self.throughput.begin_epoch(self._global_train_stats())
        step = start
        while step < steps:
            count = self._next_count(step, steps)
            self.phase.step.run(iterator, count)
            step += count
            self.position.step = step
            self.position.global_step += count
            self._fire("on_steps", step, steps)
            stopped = self._after_steps(epoch_done=step == steps)
            if stopped is not None:
                return stopped
        return None

    def _after_steps(self, *, epoch_done: bool) -> Outcome | None:
        """Log, checkpoint and agree on stopping where their intervals fall (on every rank)."""
        out, done = self.config.output, self.position.global_step
        log_now = done % out.log_every_steps == 0
        checkpoint_now = bool(out.checkpoint_every_steps) and done % out.checkpoint_every_steps == 0
        stop_check_now = done % out.stop_check_steps == 0 or epoch_done
        if log_now or checkpoint_now or stop_check_now:  # before anything is logged or written
            self.health.check(self.phase, self.position)
        if log_now:
            self._log_interval()
        if checkpoint_now and not epoch_done:
            self._checkpoint("interval")
        if stop_check_now:
            stopped = self.stopper.agree(self.engine)
            if stopped is not None:
                self._checkpoint(stopped.value)
                return stopped
        return None

    def _next_count(self, step: int, steps: int) -> int:
        """Steps in the next compiled call: up to steps_per_execution, cut at the next boundary."""
        out, done = self.config.output, self.position.global_step
        bounds = [self.config.steps_per_execution, steps - step]
        for every in (out.log_every_steps, out.checkpoint_every_steps, out.stop_check_steps):
            if every:
                bounds.append(every - done % every)
        return max(1, min(bounds))

    def _end_epoch(self, index: int, epoch: int) -> dict[str, float]:
        if self.bn_state:
            self.engine.sync_replica_state(self.bn_state)
        sums = self._global_train_stats()
        metrics = metrics_from_stats(sums, self.phase.step.top_k)
        metrics["learning_rate"] = self.learning_rate()
        metrics.update(self.throughput.since_epoch(sums))
        metrics["train_seconds"] = self.checkpoints.train_seconds()  # over every resumption
        result = self.inputs.validate(prefix="val_")
        if result is not None:
            metrics.update(result.metrics)
            if epoch + 1 == self.config.phases[index].epochs:
                self._fire("on_evaluation", "validation", result)
        self.position = Position(index, epoch + 1, 0, self.position.global_step)
        self._fire("on_epoch_end", metrics)
        return metrics

    def _log_interval(self) -> None:
        sums = self._global_train_stats()
        metrics = metrics_from_stats(sums, self.phase.step.top_k)
        metrics["learning_rate"] = self.learning_rate()
        metrics.update(self.throughput.since_interval(sums))
        self._fire("on_log", metrics)

    def _final_evaluation(self) -> dict[str, EvalResult]:
        """Evaluate the final weights on the test split, and on validation if there is one."""
        results = {}
        for name, split in (("validation", self.splits.val), ("test", self.splits.test)):
            if split is not None:
                results[name] = self.evaluate(split)
                self._fire("on_evaluation", name, results[name])
        return results

    # -- checkpoints -------------------------------------------------------------------------
    def _checkpoint(
        self,
        reason: CheckpointReason,
        *,
        finished: bool = False,
        metrics: dict[str, float] | None = None,
        phase_best: bool = False,
    ) -> None:
        """Every rank calls this at the same step; the chief writes."""
        if self.bn_state:
            self.engine.sync_replica_state(self.bn_state)
        path = self.checkpoints.save(
            self.position,
            reason,
            self.model.variables,
            self.phase,
            finished=finished,
            metrics=metrics,
            patience=self.early.state,
            phase_best=phase_best,
        )
        if path is not None:
            self._fire("on_checkpoint", str(path), reason)

    def learning_rate(self) -> float:
        """The rate the optimizer applies at its current iteration."""
        return float(np.asarray(self.phase.optimizer.learning_rate))

    def _global_train_stats(self) -> np.ndarray:
        """The training sums, then the step's timing (`.throughput`), summed over every rank."""
        step = self.phase.step
        return self.engine.all_sum([np.concatenate([step.stats.numpy(), step.timing.numpy()])])[0]

    def _fire(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self, *args)
