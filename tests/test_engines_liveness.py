"""The liveness watchdog over real loopback sockets: silent ranks are named, busy ones are not."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from distxfer.engines.liveness import Board, Watchdog


class Recorder:
    """Stands in for ending the process: records what the watchdog would have said."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.event = threading.Event()

    def __call__(self, problems: list[str], timeout: float, rank: int) -> None:
        self.said = problems
        self.event.set()


def chief_and_worker(timeout: float) -> tuple[Watchdog, Watchdog, Recorder, Recorder]:
    listener = socket.create_server(("127.0.0.1", 0))
    address = ("127.0.0.1", listener.getsockname()[1])
    heard_by_chief, heard_by_worker = Recorder(), Recorder()
    chief = Watchdog(0, 2, timeout, address, listener, on_silence=heard_by_chief)
    worker = Watchdog(1, 2, timeout, address, on_silence=heard_by_worker)
    return chief, worker, heard_by_chief, heard_by_worker


def test_ranks_that_keep_beating_are_never_reported():
    chief, worker, by_chief, by_worker = chief_and_worker(timeout=2)
    try:
        assert not by_chief.event.wait(4) and not by_worker.event.wait(0)
    finally:
        worker.close()
        chief.close()


def test_the_chief_names_a_rank_that_stopped_beating():
    chief, worker, by_chief, _ = chief_and_worker(timeout=2)
    try:
        time.sleep(1.5)
        worker.close()  # as if frozen: no more heartbeats
        started = time.monotonic()
        assert by_chief.event.wait(10)
        assert 1.0 <= time.monotonic() - started < 5
        (said,) = by_chief.said
        assert said.startswith("rank 1 (pid ") and "has not answered for" in said
    finally:
        chief.close()


def test_a_rank_that_never_connects_is_named_after_the_timeout():
    listener = socket.create_server(("127.0.0.1", 0))
    address = ("127.0.0.1", listener.getsockname()[1])
    heard = Recorder()
    chief = Watchdog(0, 3, 1.5, address, listener, on_silence=heard)
    worker = Watchdog(1, 3, 1.5, address, on_silence=Recorder())
    try:
        assert heard.event.wait(10)
        (said,) = heard.said
        assert said.startswith("rank 2 has not answered for")
    finally:
        worker.close()
        chief.close()


def test_a_worker_names_the_chief_when_it_stops_answering():
    chief, worker, _, by_worker = chief_and_worker(timeout=2)
    try:
        time.sleep(1.5)
        chief.close()
        assert by_worker.event.wait(10)
        assert by_worker.said == [by_worker.said[0]]
        assert by_worker.said[0].startswith("rank 0 (the chief) has not answered for")
    finally:
        worker.close()


def test_the_board_counts_silence_from_the_start_until_the_first_beat():
    board = Board(size=3, timeout=5)
    start = board.started
    assert board.silent(start + 4) == []
    board.heard(1, "pid 7 on node1")
    later = time.monotonic() + 6
    assert board.silent(later) == [
        f"rank 1 (pid 7 on node1) has not answered for {later - board.peers[1].last:.0f} s",
        f"rank 2 has not answered for {later - start:.0f} s",
    ]


@pytest.mark.slow
def test_tensorflow_takes_our_coordination_service_heartbeat_timeout(tmp_path):
    """configure_heartbeats uses private TensorFlow API: MultiWorkerMirroredStrategy must keep
    the service we configured (and its timeout) instead of configuring its own."""
    import json
    import subprocess
    import sys

    from conftest import REPO, cli_env

    code = """
import json, os
from distxfer.engines.multiworker import configure_heartbeats
configure_heartbeats(123)
import tensorflow as tf
from tensorflow.python.eager import context
strategy = tf.distribute.MultiWorkerMirroredStrategy()
config = context.context()._coordination_service_config
print(json.dumps([config.heartbeat_timeout_in_ms, config.service_leader,
                  [(j.name, j.num_tasks) for j in config.coordinated_job_list]]))
"""
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{free()}"]},
        "task": {"type": "worker", "index": 0},
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(TF_CONFIG=json.dumps(tf_config)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    timeout, leader, jobs = json.loads(out.stdout.strip().splitlines()[-1])
    assert timeout == 123_000 and leader == "/job:worker/replica:0/task:0"
    assert jobs == [["worker", 1]]


def free() -> int:
    from distxfer.engines.tfconfig import free_port

    return free_port()
