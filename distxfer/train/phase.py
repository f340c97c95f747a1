"""What a phase trains with: which layers learn, a fresh optimizer on the phase's schedule, and
the compiled step that binds them to the model and the engine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import keras

from distxfer.config import Config
from distxfer.data.augment import augment_on_device
from distxfer.engines import Engine
from distxfer.models import TrainableSummary, apply_phase
from distxfer.train.epochs import Epochs
from distxfer.train.optim import make_optimizer
from distxfer.train.schedule import ScheduleShape, make_schedule, peak_learning_rate
from distxfer.train.steps import TrainStep

log = logging.getLogger(__name__)


@dataclass
class PhaseSetup:
    """One phase, ready to train."""

    index: int
    summary: TrainableSummary  # what learns, for the log
    optimizer: keras.optimizers.Optimizer
    peak_lr: float  # after scaling to the global batch
    step: TrainStep


def set_up_phase(
    config: Config,
    index: int,
    model: keras.Model,
    engine: Engine,
    epochs: Epochs,
    class_weights: Sequence[float] | None = None,
    *,
    step_model: keras.Model | None = None,
) -> PhaseSetup:
    """Make phase `index` of `config` trainable, to train on `epochs` (their batching and the
    global steps of each) with per-class loss weights `class_weights`. The step trains
    `step_model` (a part of `model` sharing its variables: the head, on cached features) if
    given, else `model`."""
    phase = config.phases[index]
    summary = apply_phase(model, phase)
    batching, epoch_steps = epochs.batching, epochs.phase_steps(index)
    global_batch = batching.global_batch  # the learning rate scales with it, not the hardware
    peak = peak_learning_rate(phase, global_batch, config.data.batch_size)
    shape = ScheduleShape(
        peak=peak,
        total_steps=sum(epoch_steps),
        warmup_steps=round(phase.warmup_epochs * epoch_steps[0]),
        steps_per_epoch=epoch_steps[0],
    )
    with engine.scope():  # the optimizer's variables live where the model's do
        optimizer = make_optimizer(phase, make_schedule(phase, shape), config.precision)
        optimizer.build(model.trainable_variables)
    data = config.data
    on_device = data.augment_on == "device" and (data.augment.geometric or data.augment.brightness)
    step = TrainStep(
        step_model or model,
        optimizer,
        engine,
        global_batch=global_batch,
        num_classes=int(model.outputs[0].shape[-1]),
        label_smoothing=phase.label_smoothing,
        class_weights=list(class_weights) if class_weights else None,
        accumulation=batching.accumulation,
        xla=config.xla,
        steps_per_execution=config.steps_per_execution,
        augment=augment_on_device(data.augment) if on_device else None,
    )
    accumulating = batching.accumulation
    log.info(
        "phase %d '%s': %s; peak learning rate %.3g for global batch %d%s",
        index + 1,
        phase.name,
        summary,
        peak,
        global_batch,
        f", accumulating {accumulating} micro-batches per step" if accumulating > 1 else "",
    )
    return PhaseSetup(index, summary, optimizer, peak, step)
