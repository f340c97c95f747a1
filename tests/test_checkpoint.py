"""Checkpoint store: atomic files, newest K kept plus the best, torn files ignored."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from distxfer.checkpoint import (
    CheckpointStore,
    Snapshot,
    check_fits,
    read_snapshot,
    write_npz_atomic,
)
from distxfer.errors import CheckpointError
from distxfer.train.state import STATE_VERSION, BestMetric, DataOrder, Position, RunState


def snapshot(step: int, value: float = 1.0) -> Snapshot:
    order = DataOrder(seed=0, global_batch=8, num_pipelines=1, num_train=10, train_fingerprint="f")
    state = RunState(Position(0, 1, 2, step), "interval", False, optimizer_phase=0, data=order)
    return Snapshot(state, [np.full((2, 3), value, np.float32), np.arange(4)], [np.array(step)])


def test_saved_checkpoint_reads_back_identically(tmp_path):
    store = CheckpointStore(tmp_path, keep=3, best_metric="val_accuracy", writer=True)
    store.save(snapshot(10, 2.5), is_best=False)
    store.wait()
    back = store.latest()
    assert back.state.global_step == 10
    assert np.array_equal(back.model[0], np.full((2, 3), 2.5)) and np.array_equal(
        back.model[1], np.arange(4)
    )
    assert int(back.optimizer[0]) == 10


def test_only_the_newest_k_are_kept_but_the_best_survives(tmp_path):
    store = CheckpointStore(tmp_path, keep=2, best_metric="val_accuracy", writer=True)
    for step in (1, 2, 3, 4):
        store.save(snapshot(step, float(step)), is_best=step == 1)
    store.wait()
    assert store.steps() == [3, 4]
    assert store.best().state.global_step == 1
    assert float(store.best().model[0][0, 0]) == 1.0


def test_a_torn_newest_file_is_skipped_for_the_previous_one(tmp_path):
    store = CheckpointStore(tmp_path, keep=5, best_metric="val_accuracy", writer=True)
    store.save(snapshot(1), is_best=False)
    store.wait()
    store.path_for(2).write_bytes(b"PK\x03\x04 truncated")
    assert store.latest().state.global_step == 1


def test_leftover_temporary_files_are_removed_and_never_read(tmp_path):
    (tmp_path / ".ckpt-000000009.npz.tmp-123").write_bytes(b"partial")
    store = CheckpointStore(tmp_path, keep=5, best_metric="val_accuracy", writer=True)
    assert not list(tmp_path.glob(".*tmp*"))
    assert store.latest() is None


def test_a_failed_write_leaves_the_old_file_and_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    write_npz_atomic(path, {"a": np.ones(3)})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_npz_atomic(path, {"a": np.zeros(3)})
    monkeypatch.undo()
    assert np.array_equal(np.load(path)["a"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_write_errors_surface_on_the_next_wait(tmp_path, monkeypatch):
    from distxfer import checkpoint

    def full_disk(path, arrays):
        raise OSError("No space left on device")

    store = CheckpointStore(tmp_path, keep=2, best_metric="val_accuracy", writer=True)
    monkeypatch.setattr(checkpoint, "write_npz_atomic", full_disk)
    store.save(snapshot(1), is_best=False)
    with pytest.raises(CheckpointError, match="No space left on device"):
        store.wait()
    store.wait()  # reported once


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "ckpt-000000001.npz"
    bad.write_bytes(b"nonsense")
    with pytest.raises(CheckpointError, match="ckpt-000000001.npz cannot be read"):
        read_snapshot(bad)


class FakeVariable:
    def __init__(self, shape, path="dense/kernel"):
        self.shape, self.path = shape, path


def test_check_fits_rejects_other_architectures():
    check_fits([np.zeros((2, 3))], [FakeVariable((2, 3))], "model", "run")
    with pytest.raises(CheckpointError, match="holds 1 model variables but this run has 2"):
        check_fits([np.zeros((2, 3))], [FakeVariable((2, 3)), FakeVariable((3,))], "model", "run")
    with pytest.raises(CheckpointError, match=r"dense/kernel has shape \(4, 3\) here but \(2, 3\)"):
        check_fits([np.zeros((2, 3))], [FakeVariable((4, 3))], "model", "run")


def test_a_checkpoint_records_its_whole_state(tmp_path):
    store = CheckpointStore(tmp_path, keep=3, best_metric="val_accuracy", writer=True)
    written = snapshot(7)
    written.state.best = BestMetric("val_accuracy", 0.5, 6)
    store.save(written, is_best=False)
    store.wait()
    assert store.latest().state == written.state


def test_a_checkpoint_of_another_state_version_stops_instead_of_being_skipped(tmp_path):
    store = CheckpointStore(tmp_path, keep=3, best_metric="val_accuracy", writer=True)
    store.save(snapshot(1), is_best=False)
    store.wait()
    path = store.path_for(1)
    with np.load(path) as data:
        arrays = dict(data)
    record = json.loads(str(arrays["state"]))
    record["version"] = STATE_VERSION + 1
    arrays["state"] = np.array(json.dumps(record))
    write_npz_atomic(path, arrays)
    with pytest.raises(CheckpointError, match="are from another distxfer version"):
        store.latest()
