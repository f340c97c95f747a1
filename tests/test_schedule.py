"""Learning rate: scaled to the global batch, warmed up, then decayed as configured."""

from __future__ import annotations

import math

import pytest

from distxfer.config import PhaseConfig
from distxfer.train.schedule import PhaseSchedule, ScheduleShape, make_schedule, peak_learning_rate


@pytest.mark.parametrize(("scaling", "expected"), [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_peak_rate_scales_with_the_global_batch(scaling, expected):
    phase = PhaseConfig(learning_rate=0.1, lr_scaling=scaling)
    assert peak_learning_rate(phase, global_batch=128, per_replica_batch=32) == pytest.approx(
        expected
    )


def test_reference_batch_overrides_the_per_replica_batch():
    phase = PhaseConfig(learning_rate=0.1, lr_scaling="linear", reference_batch=256)
    assert peak_learning_rate(phase, global_batch=512, per_replica_batch=32) == pytest.approx(0.2)


def rates(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_warmup_rises_linearly_to_the_peak():
    schedule = PhaseSchedule("constant", peak=1.0, total_steps=100, warmup_steps=4)
    assert rates(schedule, [0, 1, 2, 3, 4, 50]) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_cosine_decays_from_peak_to_the_floor_after_warmup():
    schedule = PhaseSchedule(
        "cosine", peak=1.0, total_steps=110, warmup_steps=10, min_learning_rate=0.1
    )
    start, middle, end = rates(schedule, [10, 60, 110])
    assert start == pytest.approx(1.0)
    assert middle == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert end == pytest.approx(0.1)


def test_step_schedule_drops_by_the_factor_every_n_epochs():
    phase = PhaseConfig(
        learning_rate=1.0, schedule="step", step_epochs=2, step_factor=0.5, epochs=6
    )
    schedule = make_schedule(
        phase, ScheduleShape(peak=1.0, total_steps=60, warmup_steps=0, steps_per_epoch=10)
    )
    assert rates(schedule, [0, 19, 20, 39, 40]) == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])


def test_schedule_survives_keras_serialization():
    import keras

    schedule = PhaseSchedule("cosine", peak=0.5, total_steps=10, warmup_steps=2)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert rates(again, [0, 5, 10]) == pytest.approx(rates(schedule, [0, 5, 10]))
