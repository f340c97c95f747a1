"""Learning rate: a base rate scaled to the global batch, warmed up, then decayed.

The config's `learning_rate` is the rate for `reference_batch` (by default the per-replica
batch, i.e. what you would use on one device). With N times that batch globally, `linear`
scaling multiplies it by N and `sqrt` by sqrt(N): the same YAML then trains the same way on a
laptop and on many GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import ops

from distxfer.config import PhaseConfig


def peak_learning_rate(phase: PhaseConfig, global_batch: int, per_replica_batch: int) -> float:
    reference = phase.reference_batch or per_replica_batch
    ratio = global_batch / reference
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[phase.lr_scaling]
    return phase.learning_rate * factor


@dataclass(frozen=True)
class ScheduleShape:
    """Everything a phase's schedule depends on, in optimizer steps of this phase."""

    peak: float
    total_steps: int
    warmup_steps: int
    steps_per_epoch: int


@keras.saving.register_keras_serializable(package="distxfer")
class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from peak/warmup_steps to peak, then constant, cosine or step decay."""

    def __init__(
        self,
        kind: str,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        min_learning_rate: float = 0.0,
        steps_per_epoch: int = 1,
        step_epochs: int = 10,
        step_factor: float = 0.1,
    ) -> None:
        self.kind = kind
        self.peak = float(peak)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.min_learning_rate = float(min_learning_rate)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.step_epochs = int(step_epochs)
        self.step_factor = float(step_factor)

    def __call__(self, step):  # noqa: D102 - Keras calls this with optimizer.iterations
        step = ops.cast(step, "float32")
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
            decayed = self.min_learning_rate + (self.peak - self.min_learning_rate) * cosine
        elif self.kind == "step":
            drops = ops.floor(step / float(self.steps_per_epoch * self.step_epochs))
            decayed = self.peak * ops.power(self.step_factor, drops)
        else:
            decayed = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps > 0:
            warm = self.peak * ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
            return ops.where(step < self.warmup_steps, warm, decayed)
        return decayed

    def get_config(self) -> dict:
        return {
            "kind": self.kind,
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_learning_rate": self.min_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "step_epochs": self.step_epochs,
            "step_factor": self.step_factor,
        }


def make_schedule(phase: PhaseConfig, shape: ScheduleShape) -> PhaseSchedule:
    return PhaseSchedule(
        kind=phase.schedule,
        peak=shape.peak,
        total_steps=shape.total_steps,
        warmup_steps=shape.warmup_steps,
        min_learning_rate=phase.min_learning_rate,
        steps_per_epoch=shape.steps_per_epoch,
        step_epochs=phase.step_epochs,
        step_factor=phase.step_factor,
    )
