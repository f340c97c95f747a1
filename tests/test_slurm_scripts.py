"""The batch scripts' shell logic, run by bash with stand-ins for srun and scontrol: signals reach
the tasks, and the job requeues itself after a warning only. (test_slurm_jobs.py runs them on a
real Slurm.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO

from distxfer.slurm.script import ENGINES, generic_script

FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE/srun.args"
case $FAKE_TASKS in
    finish) exit 0 ;;
    fail) exit 2 ;;
    die) touch "$FAKE/started"; exec sleep 30 ;;  # killed by any signal
esac
trap 'echo USR1 >> "$FAKE/signals"; exit 75' USR1
trap 'echo TERM >> "$FAKE/signals"; exit 75' TERM
touch "$FAKE/started"
while :; do sleep 0.05; done
"""
FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE/scontrol.log"
"""
FAKE_PYTHON = """#!/bin/bash
printf '%s\n' "$@" > "$FAKE/check.args"
exit "${FAKE_CHECK:-0}"
"""  # the batch shell runs only `distxfer train --check` itself; the tasks are srun's


@pytest.fixture
def fake(tmp_path) -> Path:
    """A folder with stand-in `srun`, `scontrol` and `python`, which record what they were asked."""
    folder = tmp_path / "fake"
    folder.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("python", FAKE_PYTHON)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def start_job(fake: Path, tasks: str, *args: str, engine: str = "horovod", **env: str):
    """The batch shell of a job whose tasks behave as `tasks` says."""
    return subprocess.Popen(
        ["bash", str(REPO / "slurm" / f"{engine}.sbatch"), *args],
        env={
            "PATH": f"{fake}:{os.environ['PATH']}",
            "FAKE": str(fake),
            "FAKE_TASKS": tasks,
            "DISTXFER": f"{fake}/python -m distxfer",
            "SLURM_JOB_ID": "42",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def signalled_job(fake: Path, tasks: str, signum: int, **env: str) -> tuple[int, str]:
    """Start a job, send the batch shell `signum` once its tasks run; (exit status, log)."""
    job = start_job(fake, tasks, "configs/mnist_mlp.yaml", "runs/x", **env)
    deadline = time.monotonic() + 20
    while not (fake / "started").exists():
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[0]
        time.sleep(0.02)
    job.send_signal(signum)
    output, _ = job.communicate(timeout=30)
    return job.returncode, output


def requeues(fake: Path) -> list[str]:
    path = fake / "scontrol.log"
    return path.read_text().splitlines() if path.exists() else []


def test_the_scripts_in_slurm_are_the_ones_the_code_writes():
    for engine in ENGINES:
        path = REPO / "slurm" / f"{engine}.sbatch"
        assert path.read_text() == generic_script(engine), "run python -m distxfer.slurm.script"
        assert os.access(path, os.X_OK)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_the_scripts_ask_for_a_warning_a_requeue_and_an_appended_log_by_job_id():
    text = generic_script("multiworker")
    for line in (
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --output=slurm-%x-%j.out",
        "#SBATCH --gpus-per-node=4",
        "##SBATCH --partition=gpu",  # left to the user, like the account
        "##SBATCH --account=project",
    ):
        assert f"\n{line} " in text, line


def test_the_step_runs_distxfer_train_with_the_config_run_directory_and_overrides(fake):
    job = start_job(fake, "finish", "configs/x.yaml", "runs/x", "data.batch_size=8")
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 0 and "training finished" in output
    assert (fake / "srun.args").read_text().split("\n")[:-1] == [
        "--kill-on-bad-exit=1",  # a task that fails ends the step (test_slurm_jobs.py)
        "--mpi=pmix",
        str(fake / "python"),
        "-m",
        "distxfer",
        "train",
        "-c",
        "configs/x.yaml",
        "engine.name=horovod",
        "output.run_dir=runs/x",
        "data.batch_size=8",
    ]
    assert requeues(fake) == []


def test_the_input_is_checked_once_by_the_batch_shell_before_the_step(fake):
    job = start_job(fake, "finish", "configs/x.yaml", "runs/x", "data.batch_size=8")
    job.communicate(timeout=30)
    assert (fake / "check.args").read_text().split() == [
        *("-m", "distxfer", "train", "--check", "-c", "configs/x.yaml", "engine.name=horovod"),
        *("output.run_dir=runs/x", "data.batch_size=8"),
    ]


def test_a_refused_config_fails_the_job_with_its_own_status_and_starts_no_task(fake):
    job = start_job(fake, "finish", "configs/x.yaml", FAKE_CHECK="2")
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 2 and requeues(fake) == []
    assert "the config was refused (exit status 2): not requeued" in output
    assert not (fake / "srun.args").exists()


def test_multiworker_tasks_are_started_by_plain_srun_and_gpus_bound_one_per_task(fake):
    job = start_job(fake, "finish", "c.yaml", engine="multiworker", SLURM_GPUS_ON_NODE="4")
    job.communicate(timeout=30)
    args = (fake / "srun.args").read_text().split()
    assert args[:3] == ["--kill-on-bad-exit=1", "--gpu-bind=single:1", str(fake / "python")]
    assert "engine.name=multiworker" in args and not any(a.startswith("--mpi") for a in args)


def test_the_warning_reaches_the_tasks_and_the_job_requeues_itself(fake):
    status, output = signalled_job(fake, "preemptible", signal.SIGUSR1, SLURM_RESTART_COUNT="3")
    assert (fake / "signals").read_text() == "USR1\n"
    assert requeues(fake) == ["requeue 42"]
    assert status == 0
    assert "requeueing job 42 (requeue 4 of at most 20)" in output


def test_scancel_stops_the_tasks_the_same_way_but_does_not_requeue(fake):
    status, output = signalled_job(fake, "preemptible", signal.SIGTERM)
    assert (fake / "signals").read_text() == "TERM\n"
    assert requeues(fake) == [] and status == 75
    assert "stopped by SIGTERM (scancel, or the time limit): not requeued" in output


def test_a_failed_step_is_not_requeued(fake):
    job = start_job(fake, "fail", "c.yaml")
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 2 and requeues(fake) == []
    assert "training failed (exit status 2): not requeued" in output


def test_tasks_killed_by_the_warning_itself_are_requeued(fake):
    status, _ = signalled_job(fake, "die", signal.SIGUSR1)
    assert status == 0 and requeues(fake) == ["requeue 42"]


@pytest.mark.parametrize(("restarts", "limit"), [("20", None), ("2", "2")])
def test_requeues_stop_at_the_limit_and_say_why(fake, restarts, limit):
    env = {"SLURM_RESTART_COUNT": restarts, **({"DISTXFER_MAX_REQUEUES": limit} if limit else {})}
    status, output = signalled_job(fake, "preemptible", signal.SIGUSR1, **env)
    assert status == 75 and requeues(fake) == []
    assert (
        f"not requeued: job requeued {restarts} times already, the limit"
        f" (DISTXFER_MAX_REQUEUES={limit or 20})" in output
    )


def test_a_script_without_a_config_prints_its_usage(fake):
    job = start_job(fake, "finish")
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 2 and "CONFIG [RUN_DIR] [KEY=VALUE ...]" in output
    assert not (fake / "srun.args").exists()
