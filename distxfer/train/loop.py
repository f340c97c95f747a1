"""The training loop: phases of epochs of compiled steps, on any engine, resumable at any step.

    trainer = Trainer(config, engine, splits, run_dir, hooks)
    outcome = trainer.fit()          # "finished", "time" (budget spent) or "signal" (preempted)

Loop control (when to log, checkpoint, validate, stop) lives here; what a step computes lives in
`distxfer.train.steps`; what is shown or written around it hangs off hooks. Every collective is
called by every rank at the same global step, which the step counts alone decide.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from distxfer.checkpoint import CheckpointStore, Snapshot, check_fits
from distxfer.config import Config, DataConfig, PhaseConfig
from distxfer.data import DataSplits, FolderSplit, Split, epoch_steps, eval_dataset, train_dataset
from distxfer.engines import Engine
from distxfer.errors import CheckpointError
from distxfer.models import apply_phase, build_model
from distxfer.train.hooks import Hook, metrics_from_stats
from distxfer.train.optim import make_optimizer
from distxfer.train.schedule import ScheduleShape, make_schedule, peak_learning_rate
from distxfer.train.steps import COUNT, PhaseSteps
from distxfer.train.stopping import StopRequest

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass
class Position:
    """Where training is: the next step to run."""

    phase: int = 0
    epoch: int = 0  # within the phase
    step: int = 0  # within the epoch
    global_step: int = 0


@dataclass
class EvalResult:
    metrics: dict[str, float]
    confusion: np.ndarray  # [true, predicted] counts


def evaluate_split(
    steps: PhaseSteps,
    engine: Engine,
    split: Split,
    data: DataConfig,
    image_size: tuple[int, int],
    channels: int,
    *,
    prefix: str = "",
    cache_dir: str | None = None,
) -> EvalResult:
    """Exact loss and accuracies over a split, summed across every replica and process."""
    dataset, count = eval_dataset(
        split,
        cfg=data,
        image_size=image_size,
        channels=channels,
        per_replica_batch=data.batch_size,
        replicas_per_pipeline=engine.local_replicas,
        num_pipelines=engine.size,
        pipeline=engine.rank,
        cache_dir=cache_dir,
    )
    steps.evaluate(iter(engine.distribute(dataset)), count)
    stats, confusion = engine.all_sum([steps.eval_stats.numpy(), steps.confusion.numpy()])
    return EvalResult(metrics_from_stats(stats, steps.top_k, prefix), confusion)


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
        self.config = config
        self.engine = engine
        self.splits = splits
        self.run_dir = Path(run_dir)
        self.hooks = hooks or []
        self.cache_dir = cache_dir
        self.num_classes = len(splits.class_names)
        self.image_size = (int(config.data.image_size[0]), int(config.data.image_size[1]))
        self.channels = 1 if config.data.color_mode == "grayscale" else 3
        self.global_batch = config.data.batch_size * engine.num_replicas
        self.store = CheckpointStore(
            self.run_dir / "checkpoints",
            keep=config.output.keep_checkpoints,
            best_metric=config.output.best_metric,
            writer=engine.is_chief,
        )
        self.stopper = StopRequest(config.max_train_seconds)
        self.position = Position()
        self.best: dict[str, Any] | None = None
        self.steps: PhaseSteps
        self.optimizer: keras.optimizers.Optimizer
        self.peak_lr = 0.0
        self.trainable_summary: Any = None
        self.epoch_steps(
            0
        )  # data that cannot be laid out over the workers fails now, before any build
        keras.config.set_dtype_policy(
            config.precision
        )  # before building: layers take the global policy
        with engine.scope():
            keras.utils.set_random_seed(config.seed)
            self.model = build_model(config.model, self.num_classes, self.image_size, self.channels)
        self.bn_state = self._replica_local_state() if config.model.batchnorm == "train" else []
        self._resume: Snapshot | None = None
        self._resume_state: dict[str, Any] | None = None
        self.final_results: dict[str, EvalResult] = {}
        self._seconds_before = 0.0
        self._log_mark = (0.0, np.zeros(4), 0.0)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> str:
        """Train every remaining phase; returns "finished", "time" or "signal"."""
        state = self._agree_on_resume()
        self._fire("on_train_begin")
        if state is not None and state.get("finished"):
            log.info(
                "the run in %s already finished at step %d", self.run_dir, state["global_step"]
            )
            self._begin_phase(len(self.config.phases) - 1, self.config.phases[-1])
            self._load_model_only()
            outcome = "finished"
        else:
            outcome = self._train_phases(state)
        if outcome != "signal":
            self.final_results = self._final_evaluation()
        self._fire("on_train_end", outcome)
        return outcome

    def _train_phases(self, state: dict[str, Any] | None) -> str:
        self.stopper.install()
        try:
            outcome = "finished"
            for index in range(self.position.phase, len(self.config.phases)):
                outcome = self._run_phase(
                    index, resuming=state is not None and index == state["phase"]
                )
                if outcome != "finished":
                    break
            if outcome == "finished":
                self._checkpoint("final", finished=True)
            return outcome
        finally:
            self.stopper.uninstall()
            self.store.wait()

    def _final_evaluation(self) -> dict[str, EvalResult]:
        """Evaluate the final weights on the test split, and on validation if there is one."""
        results = {}
        for name, split in (("validation", self.splits.val), ("test", self.splits.test)):
            if split is not None:
                results[name] = self.evaluate(split)
                self._fire("on_evaluation", name, results[name])
        return results

    def preview_batch(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` training inputs of the current epoch, augmented, as the model gets them."""
        index, epoch = self.position.phase, self.position.epoch
        dataset, _ = train_dataset(
            self.splits.train,
            cfg=self.config.data,
            image_size=self.image_size,
            channels=self.channels,
            per_replica_batch=count,
            replicas_per_pipeline=1,
            num_pipelines=1,
            pipeline=0,
            seed=self.config.seed,
            epoch=self.epoch_key(index, epoch),
            start_step=0,
            cache_dir=self.cache_dir,
        )
        batch = next(iter(dataset.take(1)))
        return batch["image"].numpy(), batch["label"].numpy()

    def _run_phase(self, index: int, *, resuming: bool) -> str:
        phase = self.config.phases[index]
        self._begin_phase(index, phase)
        if resuming:
            self._restore(self._resume_state)
        elif index == 0:
            self._sync_from_chief()
        self._fire("on_phase_begin", index, phase)
        for epoch in range(self.position.epoch, phase.epochs):
            self.position.epoch = epoch
            outcome = self._train_epoch(index, epoch)
            if outcome != "finished":
                return outcome
            metrics = self._end_epoch(index, epoch)
            self._checkpoint("epoch", metrics=metrics)
        self.position = Position(index + 1, 0, 0, self.position.global_step)
        return "finished"

    def _begin_phase(self, index: int, phase: PhaseConfig) -> None:
        self.trainable_summary = apply_phase(self.model, phase)
        # record splits vary per epoch; folder splits do not
        per_epoch = [self.epoch_steps(self.epoch_key(index, e)) for e in range(phase.epochs)]
        self.peak_lr = peak_learning_rate(phase, self.global_batch, self.config.data.batch_size)
        shape = ScheduleShape(
            peak=self.peak_lr,
            total_steps=sum(per_epoch),
            warmup_steps=round(phase.warmup_epochs * per_epoch[0]),
            steps_per_epoch=per_epoch[0],
        )
        with self.engine.scope():
            self.optimizer = make_optimizer(
                phase, make_schedule(phase, shape), self.config.precision
            )
            self.optimizer.build(self.model.trainable_variables)
        self.steps = PhaseSteps(
            self.model,
            self.optimizer,
            self.engine,
            global_batch=self.global_batch,
            num_classes=self.num_classes,
            label_smoothing=phase.label_smoothing,
            xla=self.config.xla,
            steps_per_execution=self.config.steps_per_execution,
        )
        log.info(
            "phase %d '%s': %s; peak learning rate %.3g for global batch %d",
            index + 1,
            phase.name,
            self.trainable_summary,
            self.peak_lr,
            self.global_batch,
        )

    def _train_epoch(self, index: int, epoch: int) -> str:
        start = self.position.step
        dataset, steps = train_dataset(
            self.splits.train,
            cfg=self.config.data,
            image_size=self.image_size,
            channels=self.channels,
            per_replica_batch=self.config.data.batch_size,
            replicas_per_pipeline=self.engine.local_replicas,
            num_pipelines=self.engine.size,
            pipeline=self.engine.rank,
            seed=self.config.seed,
            epoch=self.epoch_key(index, epoch),
            start_step=start,
            cache_dir=self.cache_dir,
        )
        steps += start
        iterator = iter(self.engine.distribute(dataset))
        if start == 0:
            self.steps.train_stats.assign(np.zeros(4))
        self._fire("on_epoch_begin", epoch, steps, start)
        self._log_mark = (
            time.perf_counter(),
            self._global_train_stats(),
            self.position.global_step,
        )
        out = self.config.output
        step = start
        while step < steps:
            count = self._next_count(step, steps)
            self.steps.train(iterator, count)
            step += count
            self.position.step = step
            self.position.global_step += count
            self._fire("on_steps", step, steps)
            done = self.position.global_step
            if done % out.log_every_steps == 0:
                self._log_interval()
            if (
                out.checkpoint_every_steps
                and done % out.checkpoint_every_steps == 0
                and step < steps
            ):
                self._checkpoint("interval")
            if done % out.stop_check_steps == 0 or step == steps:
                reason = self.stopper.agree(self.engine)
                if reason is not None:
                    self._checkpoint(reason)
                    return reason
        return "finished"

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
        metrics = metrics_from_stats(self._global_train_stats(), self.steps.top_k)
        metrics["learning_rate"] = self.learning_rate()
        if self.splits.val is not None:
            result = self.evaluate(self.splits.val, prefix="val_")
            metrics.update(result.metrics)
            if epoch + 1 == self.config.phases[index].epochs:
                self._fire("on_evaluation", "validation", result)
        self.position = Position(index, epoch + 1, 0, self.position.global_step)
        self._fire("on_epoch_end", metrics)
        return metrics

    def _log_interval(self) -> None:
        started, stats_before, step_before = self._log_mark
        stats = self._global_train_stats()
        now = time.perf_counter()
        metrics = metrics_from_stats(stats, self.steps.top_k)
        metrics["learning_rate"] = self.learning_rate()
        images = float(stats[COUNT] - stats_before[COUNT])
        metrics["images_per_second"] = images / max(now - started, 1e-9)
        self._log_mark = (now, stats, self.position.global_step)
        self._fire("on_log", metrics)

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, split: Split, prefix: str = "") -> EvalResult:
        return evaluate_split(
            self.steps,
            self.engine,
            split,
            self.config.data,
            self.image_size,
            self.channels,
            prefix=prefix,
            cache_dir=self.cache_dir,
        )

    def learning_rate(self) -> float:
        """The rate the optimizer applies at its current iteration."""
        return float(np.asarray(self.optimizer.learning_rate))

    # -- state -------------------------------------------------------------------------------
    def epoch_key(self, phase_index: int, epoch: int) -> int:
        """Epochs counted across phases, so every epoch of the run has its own data order."""
        return sum(p.epochs for p in self.config.phases[:phase_index]) + epoch

    def epoch_steps(self, epoch_key: int) -> int:
        """Global training steps of the epoch with this key (see `epoch_key`)."""
        return epoch_steps(
            self.splits.train,
            per_replica_batch=self.config.data.batch_size,
            replicas_per_pipeline=self.engine.local_replicas,
            num_pipelines=self.engine.size,
            seed=self.config.seed,
            epoch=epoch_key,
            shuffle=self.config.data.shuffle,
        )

    def train_seconds(self) -> float:
        """Seconds spent training in this run, over every resumption."""
        return self._seconds_before + self.stopper.elapsed()

    def _global_train_stats(self) -> np.ndarray:
        return self.engine.all_sum([self.steps.train_stats.numpy()])[0]

    def _replica_local_state(self) -> list[Any]:
        """BatchNorm moving statistics: updated by each replica on its own in training mode."""
        return [
            v
            for layer in self.model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)
            for v in (layer.moving_mean, layer.moving_variance)
        ]

    def _state(self, reason: str, finished: bool) -> dict[str, Any]:
        train = self.splits.train
        return {
            "version": STATE_VERSION,
            **asdict(self.position),
            "reason": reason,
            "finished": finished,
            "optimizer_phase": self.position.phase if not finished else -1,
            "best": self.best,
            "time": time.time(),
            "train_seconds": self.train_seconds(),
            "data": {
                "seed": self.config.seed,
                "global_batch": self.global_batch,
                "num_pipelines": self.engine.size,
                "num_train": len(train),
                "train_fingerprint": train.fingerprint,
            },
            "num_model": len(self.model.variables),
            "num_optimizer": len(self.optimizer.variables),
            "model_names": [v.path for v in self.model.variables],
        }

    def _checkpoint(
        self, reason: str, *, metrics: dict[str, float] | None = None, finished: bool = False
    ) -> None:
        """Every rank calls this at the same step; the chief writes."""
        if self.bn_state:
            self.engine.sync_replica_state(self.bn_state)
        epoch_stats = self._global_train_stats()
        is_best = self._update_best(metrics)
        if not self.engine.is_chief:
            return
        state = self._state(reason, finished)
        state["epoch_stats"] = [float(x) for x in epoch_stats] if self.position.step else [0.0] * 4
        snapshot = Snapshot(
            state,
            [np.asarray(v.numpy()) for v in self.model.variables],
            [np.asarray(v.numpy()) for v in self.optimizer.variables],
        )
        path = self.store.save(snapshot, is_best=is_best)
        self._fire("on_checkpoint", str(path), reason)

    def _update_best(self, metrics: dict[str, float] | None) -> bool:
        name = self.config.output.best_metric
        if not metrics or name not in metrics:
            return False
        value = metrics[name]
        better = self.best is None or (
            value < self.best["value"] if name.endswith("loss") else value > self.best["value"]
        )
        if better:
            self.best = {"metric": name, "value": value, "global_step": self.position.global_step}
        return better

    def _agree_on_resume(self) -> dict[str, Any] | None:
        """The chief's latest checkpoint state, on every rank (None for a fresh run)."""
        local = None
        if self.engine.is_chief:
            self._resume = self.store.latest()
            local = self._resume.state if self._resume else None
        state = self.engine.broadcast_object(local)
        self._resume_state = state
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise CheckpointError(
                    f"checkpoints in {self.store.directory} are from another distxfer version"
                )
            self.position = Position(
                state["phase"], state["epoch"], state["step"], state["global_step"]
            )
            self._check_data_order(state["data"])
            self.best = state.get("best")
            self._seconds_before = float(state.get("train_seconds", 0.0))
            log.info(
                "resuming from step %d (phase %d, epoch %d, step %d of the epoch)",
                state["global_step"],
                state["phase"] + 1,
                state["epoch"] + 1,
                state["step"],
            )
        return state

    def _check_data_order(self, saved: dict[str, Any]) -> None:
        """Resume mid-epoch only where the saved step means the same samples; else restart the epoch."""
        if saved.get("train_fingerprint") != self.splits.train.fingerprint:
            log.warning(
                "the training data changed since the checkpoint was written; continuing with the new data"
            )
        same_steps = saved.get("global_batch") == self.global_batch and (
            isinstance(self.splits.train, FolderSplit)
            or saved.get("num_pipelines") == self.engine.size
        )
        if self.position.step and not same_steps:
            log.warning(
                "the global batch or worker count changed (%s -> %d images per step); epoch %d restarts"
                " from its first step",
                saved.get("global_batch"),
                self.global_batch,
                self.position.epoch + 1,
            )
            self.position.step = 0

    def _restore(self, state: dict[str, Any]) -> None:
        """Load the chief's checkpoint into every rank's model (and optimizer, same phase)."""
        with_optimizer = state["optimizer_phase"] == state["phase"]
        model_vars = list(self.model.variables)
        opt_vars = list(self.optimizer.variables) if with_optimizer else []
        problem = None
        if self.engine.is_chief and self._resume is not None:
            where = str(self.store.directory)
            try:
                check_fits(self._resume.model, model_vars, "model", where)
                if with_optimizer:
                    check_fits(self._resume.optimizer, opt_vars, "optimizer", where)
            except CheckpointError as exc:
                problem = str(exc)
        problem = self.engine.broadcast_object(problem)
        if problem:
            raise CheckpointError(problem)
        if self.engine.is_chief:
            arrays = self._resume.model + (self._resume.optimizer if with_optimizer else [])
        else:
            arrays = [np.zeros(v.shape, v.dtype) for v in model_vars + opt_vars]
        arrays = self.engine.broadcast(arrays)
        for variable, value in zip(model_vars + opt_vars, arrays):
            variable.assign(value)
        if self.position.step:
            stats = (
                np.asarray(state.get("epoch_stats", [0.0] * 4))
                if self.engine.is_chief
                else np.zeros(4)
            )
            self.steps.train_stats.assign(stats)
        self._resume = None

    def _load_model_only(self) -> None:
        snapshot = self._resume if self.engine.is_chief else None
        arrays = (
            snapshot.model
            if snapshot
            else [np.zeros(v.shape, v.dtype) for v in self.model.variables]
        )
        for variable, value in zip(self.model.variables, self.engine.broadcast(arrays)):
            variable.assign(value)

    def _sync_from_chief(self) -> None:
        """Start every rank from the chief's initial weights."""
        if self.engine.size > 1:
            values = self.engine.broadcast([np.asarray(v.numpy()) for v in self.model.variables])
            for variable, value in zip(self.model.variables, values):
                variable.assign(value)

    def _fire(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self, *args)
