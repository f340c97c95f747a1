"""Early stopping per phase: when a phase stops, by which rule, and that its patience resumes."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from distxfer.config.schema import EarlyStoppingConfig, PhaseConfig
from distxfer.errors import ConfigError
from distxfer.train.early_stopping import EarlyStopping
from distxfer.train.state import Patience, RunState


def stopping(metric: str = "val_loss", patience: int = 2, min_delta: float = 0.0, **kwargs):
    rule = EarlyStoppingConfig(metric=metric, patience=patience, min_delta=min_delta)
    return EarlyStopping(PhaseConfig(name="tune", early_stopping=rule), 1, 3, **kwargs)


def epochs(early: EarlyStopping, values: list[float], metric: str = "val_loss") -> list[bool]:
    """Feed one value per epoch (checkpoints at steps 10, 20, ...); which epochs were the best."""
    best = []
    for epoch, value in enumerate(values):
        assert not early.stopped, f"stopped before epoch {epoch + 1}"
        best.append(early.update({metric: value}, global_step=10 * (epoch + 1)))
    return best


def test_a_rising_validation_loss_stops_the_phase_after_patience_epochs():
    early = stopping(patience=2)
    assert epochs(early, [1.0, 1.1, 1.2]) == [True, False, False]
    assert early.stopped and early.state.best == 1.0 and early.state.best_step == 10


def test_an_accuracy_must_rise_by_more_than_min_delta_to_count():
    early = stopping("val_accuracy", patience=2, min_delta=0.05)
    assert epochs(early, [0.5, 0.54, 0.6, 0.62, 0.64], "val_accuracy") == [
        True,
        False,
        True,
        False,
        False,
    ]
    assert early.stopped and early.state.best == 0.6


def test_a_phase_without_early_stopping_never_stops():
    early = EarlyStopping(PhaseConfig(name="head"), 0, 3)
    assert not early.update({"val_loss": 9.0}, 5) and not early.stopped and early.state is None


def test_patience_resumes_where_the_checkpoint_left_it():
    early = stopping(patience=3)
    epochs(early, [1.0, 1.5])
    record = RunState.from_json(
        {**RunState.from_json(BASE, "run").to_json(), "patience": asdict(early.state)}, "run"
    )
    resumed = stopping(patience=3, resumed=record.patience)
    assert resumed.state == Patience(1, "val_loss", best=1.0, best_step=10, waited=1)
    resumed.update({"val_loss": 1.4}, 30)
    resumed.update({"val_loss": 1.3}, 40)
    assert resumed.stopped  # the third epoch in a row without improvement, counted across runs


def test_the_patience_of_another_phase_is_not_carried_over():
    other = Patience(0, "val_loss", best=0.1, best_step=5, waited=2)
    assert stopping(resumed=other).state == Patience(1, "val_loss")


def test_top5_accuracy_needs_more_than_five_classes():
    with pytest.raises(ConfigError, match="phases.tune.early_stopping.metric: val_top5_accuracy"):
        stopping("val_top5_accuracy")


BASE = {
    "version": 1,
    "phase": 1,
    "epoch": 2,
    "step": 0,
    "global_step": 20,
    "reason": "epoch",
    "finished": False,
    "optimizer_phase": 1,
    "data": {
        "seed": 0,
        "global_batch": 8,
        "num_pipelines": 1,
        "num_train": 80,
        "train_fingerprint": "f",
    },
}
