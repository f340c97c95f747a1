"""A fresh Keras optimizer for a phase, with loss scaling under mixed float16."""

from __future__ import annotations

import keras

from distxfer.config import PhaseConfig

_OPTIMIZERS = {
    "adam": lambda p, common: keras.optimizers.Adam(**common),
    "adamw": lambda p, common: keras.optimizers.AdamW(**{**common, "weight_decay": p.weight_decay}),
    "sgd": lambda p, common: keras.optimizers.SGD(momentum=p.momentum, nesterov=True, **common),
    "rmsprop": lambda p, common: keras.optimizers.RMSprop(momentum=p.momentum, **common),
}


def make_optimizer(
    phase: PhaseConfig,
    learning_rate: keras.optimizers.schedules.LearningRateSchedule,
    precision: str,
) -> keras.optimizers.Optimizer:
    """The phase's optimizer; weight decay is decoupled (Keras 3 applies it to every optimizer)."""
    common = {
        "learning_rate": learning_rate,
        "clipnorm": phase.clipnorm,
        "weight_decay": phase.weight_decay or None,
    }
    optimizer = _OPTIMIZERS[phase.optimizer](phase, common)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
