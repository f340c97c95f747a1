"""Faults injected into real two-worker training runs, under each launcher a user would run.

A worker killed (SIGKILL) or frozen (SIGSTOP) mid-epoch, every worker told to stop (SIGTERM,
SIGUSR1): the launch must end by itself within a bounded time, say which rank was lost, leave no
process behind and keep the last checkpoint whole; a stopped run must resume to the same result.
Workers are found through /proc by the run directory on their command lines (tests/processes.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env, tiny_overrides
from processes import wait_for_ranks, wait_gone

from distxfer.checkpoint import CheckpointStore, read_snapshot

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

LAUNCHERS = {
    "horovodrun": ["launch/horovodrun.sh", "--gloo", "-np", "2"],
    "mpirun": ["launch/mpirun.sh", "-np", "2"],
    "multiworker": ["launch/multiworker_local.sh", "-n", "2"],
}
# How each launcher names the rank it lost.
KILLED = {
    "horovodrun": r"Process 1 exit with status code 137",
    "mpirun": r"process rank 1 with PID \d+ on node \S+ exited on signal 9",
    "multiworker": r"\[launch\] worker 1 was killed by SIGKILL",
}
LONG_RUN = (  # long enough to be stopped mid-epoch: 36 steps an epoch, checkpoints every 3
    "data.batch_size=1",
    "phases.0.epochs=20",
    "output.checkpoint_every_steps=3",
    "output.stop_check_steps=1",
    "output.tensorboard=false",
    "engine.threads=1",
)


def start(command: list[str], data: dict[str, Path], run_dir: Path, *extra: str):
    args = [*command, "-c", "configs/mnist_mlp.yaml", *tiny_overrides(data, run_dir, *extra)]
    return subprocess.Popen(
        args,
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def checkpoints(run_dir: Path) -> CheckpointStore:
    return CheckpointStore(run_dir / "checkpoints", keep=3, best_metric="val_loss", writer=False)


def wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = checkpoints(run_dir).steps()
        if steps:
            return steps[-1]
        if process.poll() is not None:
            pytest.fail(f"training ended first:\n{process.stdout.read()[-6000:]}")
        time.sleep(0.1)
    process.kill()
    pytest.fail("no checkpoint was written in time")


def finish(process: subprocess.Popen, timeout: float) -> str:
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the launch did not end within {timeout} s:\n{process.stdout.read()[-6000:]}")


def assert_checkpoints_whole(run_dir: Path) -> int:
    """Every checkpoint reads back; the newest is what a restart would use. Its step."""
    store = checkpoints(run_dir)
    assert store.steps(), "no checkpoint left"
    for step in store.steps():
        read_snapshot(store.path_for(step))
    assert not list((run_dir / "checkpoints").glob(".*")), "a torn temporary file was left"
    latest = store.latest()
    assert latest.state.global_step == store.steps()[-1]
    return latest.state.global_step


# -- 1. a worker killed ---------------------------------------------------------------------------


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_worker_killed_mid_epoch_ends_the_launch_naming_it_and_keeps_the_checkpoint(
    launcher, tiny_data, tmp_path
):
    run_dir = tmp_path / "run"
    process = start(LAUNCHERS[launcher], tiny_data, run_dir, *LONG_RUN)
    ranks = wait_for_ranks(str(run_dir), 2)
    wait_for_checkpoint(process, run_dir)
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    output = finish(process, timeout=120)
    assert process.returncode != 0
    assert time.monotonic() - killed < 60
    assert re.search(KILLED[launcher], output), output[-4000:]
    assert wait_gone(str(run_dir)) == [], "a process of the run is still running"
    assert_checkpoints_whole(run_dir)


# -- 2. a worker frozen ---------------------------------------------------------------------------


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_frozen_worker_stops_the_others_within_the_timeout_naming_it(
    launcher, tiny_data, tmp_path
):
    run_dir = tmp_path / "run"
    timeout = "engine.collective_timeout_seconds=10"
    process = start(LAUNCHERS[launcher], tiny_data, run_dir, *LONG_RUN, timeout)
    ranks = wait_for_ranks(str(run_dir), 2)
    wait_for_checkpoint(process, run_dir)
    os.kill(ranks[1], signal.SIGSTOP)
    frozen = time.monotonic()
    output = finish(process, timeout=120)
    assert process.returncode != 0
    assert time.monotonic() - frozen < 45  # 10 s of silence, then the launcher stops the rest
    named = f"distxfer: error: rank 1 (pid {ranks[1]} on "
    assert named in output and "engine.collective_timeout_seconds=10" in output, output[-4000:]
    assert wait_gone(str(run_dir)) == [], "the frozen worker (or another) was left behind"
    assert_checkpoints_whole(run_dir)


# -- 3. every worker told to stop -----------------------------------------------------------------

DETERMINISTIC = (  # 18 steps an epoch at 2 x 2 images, 2 epochs
    "data.batch_size=2",
    "phases=[{name: only, epochs: 2, trainable: all, optimizer: sgd, momentum: 0.9,"
    " learning_rate: 0.05, lr_scaling: none, schedule: constant}]",
    "output.checkpoint_every_steps=3",
    "output.stop_check_steps=1",
    "output.tensorboard=false",
    "engine.threads=1",
    "seed=5",
    "model.head.dropout=0",  # dropout draws differ with the number of workers
)
STOPPED_BY = {"horovodrun": signal.SIGUSR1, "multiworker": signal.SIGTERM}
# The workers exited with 75; horovodrun itself then exits with 1, the supervisor with theirs.
# horovodrun reports whichever worker it saw end first, in one of its two wordings.
ALL_EXITED_75 = {
    "horovodrun": r"(?s)(?=.*Process (\d exit with status code 75\.|name: \d\nExit code: 75\n))",
    "multiworker": r"(?s)(?=.*\[launch\] worker \d exited with status 75)",
}


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> list[np.ndarray]:
    """The same training in one process at the same global batch (2), never stopped."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    overrides = [*DETERMINISTIC, "data.batch_size=4", "engine.name=single"]
    process = start([sys.executable, "-m", "distxfer", "train"], tiny_data, run_dir, *overrides)
    output = finish(process, timeout=400)
    assert process.returncode == 0, output[-4000:]
    latest = checkpoints(run_dir).latest()
    assert latest.state.finished and latest.state.global_step == 36
    return latest.model


@pytest.mark.parametrize("launcher", sorted(STOPPED_BY))
def test_a_stop_signal_to_every_worker_checkpoints_one_step_and_the_rerun_ends_the_same(
    launcher, tiny_data, tmp_path, uninterrupted
):
    run_dir = tmp_path / "run"
    process = start(LAUNCHERS[launcher], tiny_data, run_dir, *DETERMINISTIC)
    ranks = wait_for_ranks(str(run_dir), 2)
    wait_for_checkpoint(process, run_dir)
    for pid in ranks.values():
        os.kill(pid, STOPPED_BY[launcher])
    output = finish(process, timeout=120)
    assert process.returncode == (1 if launcher == "horovodrun" else 75), output[-4000:]
    assert re.match(ALL_EXITED_75[launcher], output), output[-4000:]
    stopped = checkpoints(run_dir).latest().state
    assert stopped.reason == "signal" and stopped.global_step % 18, "not stopped mid-epoch"
    rerun = start(LAUNCHERS[launcher], tiny_data, run_dir, *DETERMINISTIC)
    output = finish(rerun, timeout=400)
    assert rerun.returncode == 0, output[-4000:]
    assert f"resuming from step {stopped.global_step} " in output
    final = checkpoints(run_dir).latest()
    assert final.state.finished and final.state.global_step == 36
    for got, want in zip(final.model, uninterrupted, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)


# -- 16. what the workers listen on ---------------------------------------------------------------


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((_address(address), int(port, 16)))
    return found


def _address(hexed: str) -> str:
    if len(hexed) == 8:
        return ".".join(str(b) for b in bytes.fromhex(hexed)[::-1])
    return "::" if set(hexed) == {"0"} else hexed


@pytest.mark.parametrize("launcher", ["horovodrun", "multiworker"])
def test_workers_listen_only_on_loopback_and_their_own_job_ports(launcher, tiny_data, tmp_path):
    import json

    run_dir = tmp_path / "run"
    process = start(LAUNCHERS[launcher], tiny_data, run_dir, *LONG_RUN)
    try:
        ranks = wait_for_ranks(str(run_dir), 2)
        wait_for_checkpoint(process, run_dir)
        job_ports = set()
        if launcher == "multiworker":
            environ = Path(f"/proc/{ranks[0]}/environ").read_bytes().split(b"\0")
            tf_config = next(v[10:] for v in environ if v.startswith(b"TF_CONFIG="))
            workers = json.loads(tf_config)["cluster"]["worker"]
            job_ports = {int(address.rsplit(":", 1)[1]) for address in workers}
        listening = [s for pid in ranks.values() for s in listening_sockets(pid)]
        assert ("127.0.0.1", 0) not in listening and listening  # the watchdog, at least
        beyond = [(a, p) for a, p in listening if a != "127.0.0.1" and p not in job_ports]
        assert beyond == [], f"listening beyond loopback: {beyond}"
    finally:
        process.kill()
        for pid in wait_gone(str(run_dir), timeout=0):
            os.kill(pid, signal.SIGKILL)
        process.communicate()
