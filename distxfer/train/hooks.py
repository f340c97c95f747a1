"""What happens around the loop, as small observers with named hooks (installed on the chief).

The loop calls every hook at the same points; a hook must not run collectives (those live in
the loop, where every rank calls them at the same step). `on_steps` runs after every compiled
call and must stay cheap; everything else runs at log, epoch or phase boundaries.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import keras

from distxfer.logs import say
from distxfer.train.state import CheckpointReason, Outcome
from distxfer.train.steps import metrics_from_stats

if TYPE_CHECKING:
    from distxfer.config import PhaseConfig
    from distxfer.train.evaluate import EvalResult
    from distxfer.train.loop import Trainer


class Hook:
    """Base class: override the points you need."""

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_phase_begin(self, trainer: Trainer, index: int, phase: PhaseConfig) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int, steps: int, start_step: int) -> None: ...
    def on_steps(self, trainer: Trainer, step: int, steps: int) -> None: ...
    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, trainer: Trainer, path: str, reason: CheckpointReason) -> None: ...
    def on_evaluation(self, trainer: Trainer, split: str, result: EvalResult) -> None: ...
    def on_train_end(self, trainer: Trainer, outcome: Outcome) -> None: ...


class ProgressHook(Hook):
    """Keras's progress bar: this process's running values between refreshes, global ones at
    the end of each epoch."""

    def __init__(self, refresh_seconds: float = 0.5) -> None:
        self.refresh_seconds = refresh_seconds
        self.verbose = 1 if sys.stdout.isatty() else 2
        self._bar: Any = None
        self._last = 0.0
        self._step = 0

    def on_phase_begin(self, trainer: Trainer, index: int, phase: PhaseConfig) -> None:
        setup, count = trainer.phase, len(trainer.config.phases)
        say(
            f"Phase {index + 1}/{count} '{phase.name}': trainable={phase.trainable}"
            f" ({setup.summary}), optimizer={phase.optimizer}, peak lr={setup.peak_lr:.3g},"
            f" global batch={trainer.batching.global_batch}"
        )

    def on_epoch_begin(self, trainer: Trainer, epoch: int, steps: int, start_step: int) -> None:
        phase = trainer.config.phases[trainer.position.phase]
        say(
            f"Epoch {epoch + 1}/{phase.epochs}"
            + (f" (resuming at step {start_step})" if start_step else "")
        )
        self._bar = keras.utils.Progbar(
            target=steps,
            verbose=self.verbose,
            stateful_metrics=["loss", "accuracy", "learning_rate"],
        )
        self._step = start_step
        self._last = time.monotonic()

    def on_steps(self, trainer: Trainer, step: int, steps: int) -> None:
        now = time.monotonic()
        self._step = step
        if self.verbose == 1 and step < steps and now - self._last >= self.refresh_seconds:
            self._last = now
            values = metrics_from_stats(trainer.phase.step.stats.numpy(), 0)
            self._bar.update(step, values=list(values.items()))

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.target, values=list(metrics.items()), finalize=True)
            self._bar = None

    def on_checkpoint(self, trainer: Trainer, path: str, reason: CheckpointReason) -> None:
        if reason in ("signal", "time"):
            say(
                f"Stopped on {'a signal' if reason == 'signal' else 'the time limit'};"
                f" checkpoint {path}"
            )
