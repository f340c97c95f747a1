"""Which layers learn in a training phase (`phases[i].trainable`).

- head: the backbone is frozen; the new head learns.
- all: every backbone layer learns too.
- top:N: the last N backbone layers *that have weights* learn (weightless layers such as
  activations, padding and pooling are not counted, so N means the same thing across families;
  BatchNorm layers are counted, even when they stay frozen as described below).
- from:LAYER: backbone layer LAYER and every layer after it learn.

Backbone layers are counted in `leaf_layers` order: a model nested in the backbone (a `.keras`
backbone that holds a keras.applications model, say) is walked into, so `top:N` and
`from:LAYER` reach its layers as they reach a keras.applications backbone's. The head always
learns and the fixed preprocessing (layers named `preprocess*`, at any depth) never does.
BatchNormalization layers in the unfrozen part stay frozen (Keras's fine-tuning advice: their
statistics came from far more data than the new task has) unless the phase sets
`train_batchnorm`, or the model was built with `model.batchnorm: train` (a backbone trained from
scratch needs its BatchNorm to learn). With
`model.batchnorm: frozen` BatchNorm runs in inference mode whatever its trainable flag, so
`train_batchnorm` then learns gamma and beta while the moving statistics stay put.

Recompile the model after `apply_phase`: Keras fixes the trainable set at compile time.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from distxfer.config.schema import PhaseConfig, TrainableSpec
from distxfer.errors import ConfigError
from distxfer.models.build import backbone_of, batchnorm_frozen, leaf_layers
from distxfer.models.preprocess import is_preprocessing_layer


@dataclass(frozen=True)
class TrainableSummary:
    """What a phase left trainable, for the log."""

    phase: str
    trainable: str  # the phase's spec, e.g. "top:20"
    trainable_layers: int  # layers (nested ones counted individually) with trainable weights
    trainable_params: int
    total_params: int
    first_trainable: str | None  # first backbone layer that learns; None if the backbone is frozen

    def __str__(self) -> str:
        start = f", backbone from {self.first_trainable}" if self.first_trainable else ""
        return (
            f"{self.trainable_layers} layers, {self.trainable_params:,} of "
            f"{self.total_params:,} parameters trainable{start}"
        )


def apply_phase(model: keras.Model, phase: PhaseConfig) -> TrainableSummary:
    """Set `trainable` on every layer of a `build_model` model for `phase`."""
    backbone = backbone_of(model)
    layers = [] if backbone is None else list(leaf_layers(backbone))
    start = _start_index(None if backbone is None else layers, phase)

    model.trainable = True  # sets every nested layer; the lines below narrow it down
    first = None  # the first backbone layer that learns, for the summary
    if backbone is not None:
        train_bn = phase.train_batchnorm or not batchnorm_frozen(model)
        for i, layer in enumerate(layers):
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = i >= start and (train_bn or not is_bn)
        if start >= len(layers):
            backbone.trainable = False
    for layer in leaf_layers(model):
        if is_preprocessing_layer(layer):
            layer.trainable = False
    if backbone is not None:
        learning = (layer.name for layer in layers[start:] if layer.trainable_weights)
        first = next(learning, None)
    return _summary(model, phase, first)


def check_phases(model: keras.Model, phases: Sequence[PhaseConfig]) -> None:
    """Raise the ConfigError `apply_phase` would raise for any of `phases`, changing nothing:
    layer names need the built model, and a typo in a later phase must not wait for it."""
    backbone = backbone_of(model)
    layers = None if backbone is None else list(leaf_layers(backbone))
    for phase in phases:
        _start_index(layers, phase)


def _start_index(layers: list[keras.Layer] | None, phase: PhaseConfig) -> int:
    """The index of the first backbone layer that learns in `phase` (0 without a backbone:
    `layers` is None)."""
    key = f"phases.{phase.name}.trainable" if phase.name else "phase.trainable"
    spec = phase.trainable_spec
    if layers is None and spec.kind not in ("head", "all"):
        raise ConfigError(f"{key}: the mlp model has no backbone layers to choose; use head or all")
    return 0 if layers is None else _first_trainable_index(layers, spec, key)


def _first_trainable_index(layers: list[keras.Layer], spec: TrainableSpec, key: str) -> int:
    if spec.kind == "head":
        return len(layers)
    if spec.kind == "all":
        return 0
    if spec.kind == "top":
        weighted = [i for i, layer in enumerate(layers) if layer.weights]
        return weighted[-min(spec.count, len(weighted))]
    names = [layer.name for layer in layers]
    if spec.layer in names:
        return names.index(spec.layer)
    close = difflib.get_close_matches(spec.layer, names, n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"{key}: the backbone has no layer {spec.layer!r}; {hint}"
        "list them with model.get_layer('backbone').summary()"
    )


def _summary(model: keras.Model, phase: PhaseConfig, first: str | None) -> TrainableSummary:
    trainable = sum(1 for layer in leaf_layers(model) if layer.trainable_weights)
    return TrainableSummary(
        phase=phase.name,
        trainable=phase.trainable.strip(),
        trainable_layers=trainable,
        trainable_params=_count(model.trainable_weights),
        total_params=_count(model.weights),
        first_trainable=first,
    )


def _count(variables: list) -> int:
    return int(sum(np.prod(v.shape) for v in variables))
