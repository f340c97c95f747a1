"""Faults in the checkpoint store, injected for real: damaged files, a writer killed mid-write,
pickled payloads. The store must always leave a previous checkpoint that reads back whole."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import REPO
from test_checkpoint import snapshot

from distxfer.checkpoint import CheckpointStore, UnreadableCheckpoint, read_snapshot
from distxfer.errors import CheckpointError


def saved_store(tmp_path, *steps: int) -> CheckpointStore:
    store = CheckpointStore(tmp_path, keep=5, best_metric="val_accuracy", writer=True)
    for step in steps:
        store.save(snapshot(step, float(step)), is_best=False)
        store.wait()
    return store


def test_every_single_bit_flip_is_detected_or_harmless(tmp_path):
    """A flipped bit anywhere in the file is caught (zip CRC, headers) or changes nothing read."""
    store = saved_store(tmp_path, 5)
    path = store.path_for(5)
    original, data = read_snapshot(path), path.read_bytes()
    detected = 0
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(bytes(damaged))
        try:
            back = read_snapshot(path)
        except UnreadableCheckpoint:
            detected += 1
            continue
        assert back.state == original.state, position
        for got, want in zip(back.model + back.optimizer, original.model + original.optimizer):
            assert np.array_equal(got, want), position
    assert detected > len(data) * 0.7  # the arrays and the state are all CRC-checked


@pytest.mark.parametrize("damage", ["truncated", "bytes flipped"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_with_a_warning(
    damage, tmp_path, caplog
):
    store = saved_store(tmp_path, 3, 6)
    newest = store.path_for(6)
    data = bytearray(newest.read_bytes())
    if damage == "truncated":
        newest.write_bytes(bytes(data[: len(data) * 2 // 3]))
    else:
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="distxfer.checkpoint"):
        latest = store.latest()
    assert latest.state.global_step == 3
    assert float(latest.model[0][0, 0]) == 3.0
    assert f"checkpoint {newest} cannot be read" in caplog.text
    assert "using an older checkpoint" in caplog.text


def test_no_readable_checkpoint_is_an_error_naming_the_folder_not_a_fresh_start(tmp_path):
    store = saved_store(tmp_path, 2, 4)
    for step in (2, 4):
        store.path_for(step).write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(CheckpointError) as error:
        store.latest()
    message = str(error.value)
    assert f"none of the 2 checkpoint(s) in {tmp_path} can be read" in message
    assert "\n" not in message and "move that folder away" in message
    assert error.value.details == (str(store.path_for(2)), str(store.path_for(4)))


def test_an_empty_checkpoint_folder_is_a_fresh_start(tmp_path):
    assert CheckpointStore(tmp_path, keep=2, best_metric="val_loss", writer=True).latest() is None


WRITER = """
import sys
import numpy as np
sys.path[:0] = [{repo!r}, {tests!r}]
from distxfer.checkpoint import CheckpointStore
from test_checkpoint import snapshot

store = CheckpointStore({folder!r}, keep=2, best_metric="val_accuracy", writer=True)
step = store.latest().state.global_step if store.latest() else 0
while True:
    step += 1
    written = snapshot(step, float(step))
    written.model.append(np.full((256, 1024), float(step), np.float32))  # 1 MiB: writes take time
    store.save(written, is_best=step % 3 == 0)
    store.wait()
    print(step, flush=True)
"""


def test_sigkill_at_random_moments_of_checkpoint_writes_always_leaves_the_last_one(tmp_path):
    """A real writer process, killed 15 times at random moments of its write loop; after each
    kill the store cleans up its leftovers and the newest committed checkpoint reads back."""
    folder = tmp_path / "checkpoints"
    code = textwrap.dedent(WRITER).format(
        repo=str(REPO), tests=str(REPO / "tests"), folder=str(folder)
    )
    rng = random.Random(0)
    committed = 0
    leftovers_seen = 0
    for _ in range(15):
        writer = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        first = writer.stdout.readline()  # at least one write of this process committed
        assert first.strip().isdigit(), first
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate()
        committed = int(([first] + out.split())[-1])
        leftovers_seen += len(list(folder.glob(".*")))
        store = CheckpointStore(folder, keep=2, best_metric="val_accuracy", writer=True)
        assert not list(folder.glob(".*")), "a leftover temporary file survived the clean-up"
        latest = store.latest()
        assert latest.state.global_step >= committed  # a write may finish after the last print
        assert store.steps()[-1] == latest.state.global_step  # the newest file is whole
        assert float(latest.model[-1][0, 0]) == latest.state.global_step
        if (folder / "best.npz").exists():
            assert store.best().state.global_step % 3 == 0
    assert leftovers_seen > 0, "no kill landed inside a write; the test proved nothing"


def test_a_checkpoint_holding_a_pickled_object_is_refused_unopened(tmp_path):
    """allow_pickle=False: a payload that would run code when unpickled is never unpickled."""
    store = saved_store(tmp_path, 1)
    path, marker = store.path_for(1), tmp_path / "payload_ran"
    payload = f"""
import numpy as np
class Payload:
    def __reduce__(self):
        return (open, ({str(marker)!r}, "w"))
with np.load({str(path)!r}) as data:
    arrays = dict(data)
arrays["model/00000"] = np.array([Payload()], dtype=object)
np.savez({str(path)!r}, **arrays)
"""
    subprocess.run([sys.executable, "-c", textwrap.dedent(payload)], check=True)
    assert not marker.exists()
    with pytest.raises(UnreadableCheckpoint, match="allow_pickle=False"):
        read_snapshot(path)
    assert not marker.exists()
