"""What a checkpoint records (RunState): its JSON layout, version check and best metric."""

from __future__ import annotations

import pytest

from distxfer.errors import CheckpointError
from distxfer.train.state import (
    STATE_VERSION,
    BestMetric,
    DataOrder,
    Outcome,
    Position,
    RunState,
    same_samples,
)

# A state as distxfer wrote it before RunState existed: the layout every checkpoint keeps.
EARLIER_RECORD = {
    "version": 1,
    "phase": 1,
    "epoch": 0,
    "step": 3,
    "global_step": 39,
    "reason": "signal",
    "finished": False,
    "optimizer_phase": 1,
    "best": {"metric": "val_accuracy", "value": 0.8, "global_step": 36},
    "time": 1796160000.5,
    "train_seconds": 12.5,
    "data": {
        "seed": 5,
        "global_batch": 8,
        "num_pipelines": 2,
        "num_train": 72,
        "train_fingerprint": "abc",
    },
    "num_model": 4,
    "num_optimizer": 6,
    "model_names": ["head_hidden/kernel"],
    "epoch_stats": [1.0, 2.0, 0.0, 24.0],
}


def test_a_state_written_by_earlier_versions_reads_back():
    state = RunState.from_json(EARLIER_RECORD, "run/checkpoints")
    assert state.position == Position(phase=1, epoch=0, step=3, global_step=39)
    assert state.best == BestMetric("val_accuracy", 0.8, 36) and state.has_optimizer
    assert state.data.num_pipelines == 2 and state.epoch_stats == [1.0, 2.0, 0.0, 24.0]


def test_a_state_round_trips_through_the_same_json_layout():
    state = RunState.from_json(EARLIER_RECORD, "run/checkpoints")
    written = state.to_json()
    store_keys = {"num_model", "num_optimizer"}  # the checkpoint store adds these
    assert written == {k: v for k, v in EARLIER_RECORD.items() if k not in store_keys}


def test_a_state_of_another_version_is_refused_with_the_folder_named():
    with pytest.raises(CheckpointError, match="checkpoints in run/checkpoints are from another"):
        RunState.from_json({**EARLIER_RECORD, "version": STATE_VERSION + 1}, "run/checkpoints")


def test_a_lower_loss_and_a_higher_accuracy_are_better():
    assert BestMetric("val_loss", 0.5, 1).beaten_by(0.4)
    assert not BestMetric("val_loss", 0.5, 1).beaten_by(0.6)
    assert BestMetric("val_accuracy", 0.5, 1).beaten_by(0.6)


def test_outcomes_are_the_words_checkpoints_record():
    assert [o.value for o in Outcome] == ["finished", "time", "signal"]


def order(global_batch: int, workers: int) -> DataOrder:
    return DataOrder(0, global_batch, workers, 72, "abc")


def test_fewer_workers_at_the_same_global_batch_resume_at_the_same_step_and_say_so():
    exact, why = same_samples(order(8, 2), order(8, 1), order_depends_on_workers=False)
    assert exact
    assert why == (
        "the workers changed (2 -> 1 worker processes) at the same global batch of 8 images,"
        " so every step covers the same images"
    )


def test_another_global_batch_never_resumes_at_the_same_step():
    for depends in (False, True):
        exact, why = same_samples(order(8, 2), order(16, 4), order_depends_on_workers=depends)
        assert not exact and why.startswith("the global batch changed (8 -> 16 images per step)")


def test_other_workers_on_an_input_ordered_by_worker_do_not_resume_at_the_same_step():
    exact, why = same_samples(order(8, 2), order(8, 4), order_depends_on_workers=True)
    assert not exact and "the workers changed (2 -> 4 worker processes)" in why
    assert "TFRecord files dealt to workers" in why


def test_the_same_batch_and_workers_resume_exactly_with_nothing_to_say():
    assert same_samples(order(8, 2), order(8, 2), order_depends_on_workers=True) == (True, "")
