"""The batch scripts of slurm/ and `distxfer slurm` under a real one-node Slurm: preempted jobs
requeue themselves and resume exactly, scancel and failures do not requeue, sweeps are array jobs.

Select the preemption tests with `pytest -m slurm -k "requeue or preempt"`. The node has no GPU
and 2 cores: jobs ask for --gpus-per-node=0 and one core per task.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env, hparams_experiment, run_cli, tiny_overrides
from processes import wait_for_ranks, wait_gone
from slurm_cluster import SlurmCluster, cluster_or_skip

from distxfer.checkpoint import CheckpointStore, read_snapshot

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.slurm]
CONFIG = str(REPO / "configs" / "mnist_mlp.yaml")
CPU_NODE = ["--gpus-per-node=0", "--cpus-per-task=1"]
JOB_ENV = {  # sbatch passes the submitting environment on to the job
    "PYTHONPATH": str(REPO),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "OMP_NUM_THREADS": "1",
    "DISTXFER": f"{sys.executable} -m distxfer",
}
ENGINE_STARTED = "INFO distxfer.run: engine "  # the chief's first line in train.log
STOPPED = re.compile(r"Stopped on a signal; checkpoint \S*ckpt-(\d+)\.npz")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from cluster_or_skip(tmp_path_factory.mktemp("slurm"))


def overrides(data: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    """The tiny mlp, 9 steps per epoch at 2 x 4 images, all ranks asked to stop every 4 steps."""
    return tiny_overrides(data, run_dir, "engine.threads=1", "output.stop_check_steps=4", *extra)


def submit(
    cluster: SlurmCluster, engine: str, logs: Path, *args: str, options: tuple[str, ...] = ()
) -> tuple[str, Path]:
    """`sbatch slurm/ENGINE.sbatch CONFIG ARGS` for 2 tasks; (job id, its log)."""
    job = cluster.sbatch(
        *CPU_NODE,
        "--ntasks-per-node=2",
        f"--output={logs}/%j.out",
        *options,
        str(REPO / "slurm" / f"{engine}.sbatch"),
        CONFIG,
        *args,
        env=JOB_ENV,
    )
    return job, logs / f"{job}.out"


def wait_for_text(path: Path, text: str, count: int = 1, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} did not appear {count} time(s) in {path}")


def scancel(cluster: SlurmCluster, *args: str) -> None:
    subprocess.run(["scancel", *args], env=cluster.env, check=True, timeout=120)


def final_weights(run_dir: Path) -> tuple[int, list[np.ndarray]]:
    store = CheckpointStore(run_dir / "checkpoints", keep=3, best_metric="", writer=False)
    snapshot = store.latest()
    assert snapshot is not None and snapshot.state.finished
    return snapshot.state.global_step, snapshot.model


def test_a_job_preempted_twice_requeues_itself_and_ends_like_an_uninterrupted_run(
    cluster, tiny_data, tmp_path
):
    run_dir = tmp_path / "preempted"
    # Comparable across engines: no dropout (its masks differ), SGD (Adam's steps on near-zero
    # gradients magnify float32 rounding).
    sgd = [
        "model.head.dropout=0",
        "phases=[{name: only, epochs: 2, trainable: all, optimizer: sgd, momentum: 0.9,"
        " learning_rate: 0.05, lr_scaling: none}]",
    ]
    args = overrides(tiny_data, run_dir, *sgd)
    job, log = submit(cluster, "horovod", tmp_path, str(run_dir), *args)
    wait_for_text(run_dir / "train.log", ENGINE_STARTED)  # the tasks are starting up: warn them
    scancel(cluster, "--signal=USR1", "--batch", job)
    wait_for_text(log, "requeueing job")
    # Uninterrupted: the same global batch (8) in one process, while the job waits to restart.
    reference = subprocess.Popen(
        [sys.executable, "-m", "distxfer", "train", "-c", CONFIG, "engine.name=single"]
        + overrides(tiny_data, tmp_path / "reference", *sgd, "data.batch_size=8"),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_text(run_dir / "train.log", ENGINE_STARTED, 2)  # requeued and starting: again
    scancel(cluster, "--signal=USR1", "--batch", job)
    info = cluster.wait_for_job(job)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "2", text[-4000:]
    assert text.count("preempted after checkpointing: requeueing job") == 2
    assert "start 3 (SLURM_RESTART_COUNT=2" in text and "training finished" in text
    # The signal came while the tasks started up: each stop is at the first check, mid-epoch.
    assert [int(step) for step in STOPPED.findall(text)] == [4, 8]
    train_log = (run_dir / "train.log").read_text()
    for step in (4, 8):
        assert (
            f"resuming from step {step} (phase 1, epoch 1, step {step} of the epoch)" in train_log
        )
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    steps, weights = final_weights(run_dir)
    reference_steps, reference_weights = final_weights(tmp_path / "reference")
    assert steps == reference_steps == 18
    for got, want in zip(weights, reference_weights, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    # Only the chief wrote: one TensorBoard file per start, a model, the test report.
    assert len(list((run_dir / "tensorboard" / "train").iterdir())) == 3
    assert (run_dir / "model.keras").is_file() and (run_dir / "eval" / "test.json").is_file()
    assert not re.search(r"\[rank 1\] .* INFO ", text)


def test_a_time_limit_warning_requeues_the_job_and_scancel_then_stops_it_without_requeue(
    cluster, tiny_data, tmp_path
):
    run_dir = tmp_path / "long"
    long = "phases=[{name: only, epochs: 1000, trainable: all, learning_rate: 0.001}]"
    job, log = submit(
        cluster,
        "multiworker",
        tmp_path,
        str(run_dir),
        *overrides(tiny_data, run_dir, long),
        options=("--time=2", "--signal=B:USR1@60"),
    )
    wait_for_text(log, "requeueing job", timeout=200)
    # The second start gets 10 minutes: no second warning races the scancel below.
    update = ["scontrol", "update", f"JobId={job}", "TimeLimit=10"]
    subprocess.run(update, env=cluster.env, check=True, timeout=60)
    wait_for_text(run_dir / "train.log", "resuming from step")
    resumed_epoch = int(re.findall(r"epoch (\d+), step", (run_dir / "train.log").read_text())[0])
    wait_for_text(log, f"Epoch {resumed_epoch + 1}/1000")  # training again
    scancel(cluster, job)
    info = cluster.wait_for_job(job)
    text = log.read_text()
    assert info["JobState"] == "CANCELLED" and info["Restarts"] == "1", text[-4000:]
    assert text.count("SIGUSR1: passing it to the tasks") == 1
    assert text.count("requeueing job") == 1
    assert "stopped by SIGTERM (scancel, or the time limit): not requeued" in text
    first, second = (int(step) for step in STOPPED.findall(text))
    assert 0 < first < second
    assert f"resuming from step {first} " in (run_dir / "train.log").read_text()


def test_a_job_with_a_bad_config_fails_before_its_tasks_start_and_is_not_requeued(
    cluster, tiny_data, tmp_path
):
    run_dir = tmp_path / "bad"
    bad = overrides(tiny_data, run_dir, "data.batch_size=0")
    job, log = submit(cluster, "horovod", tmp_path, str(run_dir), *bad)
    info = cluster.wait_for_job(job)
    text = log.read_text()
    assert (info["JobState"], info["Restarts"], info["ExitCode"]) == ("FAILED", "0", "2:0"), text
    assert text.count("distxfer: error: data.batch_size: must be at least 1") == 1
    assert "the config was refused (exit status 2): not requeued" in text
    assert "srun --kill-on-bad-exit" not in text  # refused before any task started
    assert "start 2" not in text and not run_dir.exists()


def test_a_task_killed_mid_epoch_ends_the_job_at_once_and_keeps_the_checkpoint(
    cluster, tiny_data, tmp_path
):
    run_dir = tmp_path / "killed"
    # 36 steps an epoch at 2 x 1 images, checkpoints every 3: still training when killed.
    long = ("data.batch_size=1", "phases.0.epochs=20", "output.checkpoint_every_steps=3")
    job, log = submit(
        cluster, "multiworker", tmp_path, str(run_dir), *overrides(tiny_data, run_dir, *long)
    )
    ranks = wait_for_ranks(str(run_dir), 2, timeout=240)
    store = CheckpointStore(run_dir / "checkpoints", keep=3, best_metric="", writer=False)
    deadline = time.monotonic() + 240
    while not store.steps() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    info = cluster.wait_for_job(job, timeout=120)
    text = log.read_text()
    # Without srun --kill-on-bad-exit, rank 0 waits for rank 1 in a collective for minutes.
    assert time.monotonic() - killed < 60, text[-4000:]
    assert (info["JobState"], info["Restarts"]) == ("FAILED", "0"), text[-4000:]
    assert re.search(r"srun: error: \S+: task 1: Killed", text), text[-4000:]
    assert "training failed (exit status" in text and "not requeued" in text
    assert wait_gone(str(run_dir)) == [], "a task of the job is still running"
    for step in store.steps():
        read_snapshot(store.path_for(step))  # every checkpoint whole
    assert store.steps() and not list((run_dir / "checkpoints").glob(".*"))


def test_doctor_says_slurm_is_usable_when_its_controller_answers(cluster):
    result = run_cli("doctor", "slurm", env=cli_env(**cluster.env))
    (line,) = [x for x in result.stdout.splitlines() if x.split()[1:2] == ["slurm"]]
    assert line.startswith("ok   ") and "22.05" in line and " is UP" in line, result.stdout


def test_a_sweep_is_one_array_job_and_distxfer_runs_tabulates_its_runs(
    cluster, tiny_data, tmp_path
):
    folder = tmp_path / "sweep"
    submitted = run_cli(
        "slurm",
        "-c",
        CONFIG,
        *overrides(tiny_data, folder, "phases.0.epochs=1"),
        *("--engine", "multiworker", "--tasks-per-node", "1", "--time", "10"),
        *("--sweep", "phases.only.learning_rate=0.01,0.02", "--submit"),
        env=cli_env(**JOB_ENV, SLURM_CONF=str(cluster.conf)),
    )
    job = re.search(r"submitted array job (\d+) \(2 runs\)", submitted.stdout).group(1)
    for task in ("0", "1"):
        info = cluster.wait_for_job(f"{job}_{task}")
        log = folder / "slurm" / f"{job}_{task}.out"
        assert info["JobState"] == "COMPLETED", log.read_text()[-4000:]
        assert f"(array task {task})" in log.read_text()
    table = run_cli("runs", str(folder), env=cli_env(SLURM_CONF=str(cluster.conf))).stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [row[:3] for row in rows] == [
        ["000_learning_rate=0.01", "phases.only.learning_rate=0.01", "finished"],
        ["001_learning_rate=0.02", "phases.only.learning_rate=0.02", "finished"],
    ]
    assert all(float(row[-1]) > 0.5 for row in rows)  # test accuracy
    experiment = hparams_experiment(folder)
    rates = {h.name: h for h in experiment.hparam_infos}["phases.0.learning_rate"]
    assert (rates.domain_interval.min_value, rates.domain_interval.max_value) == (0.01, 0.02)
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert {("validation", "epoch_accuracy"), ("train", "epoch_loss")} <= metrics


def test_cross_validation_is_one_array_job_and_a_summary_job_after_it(cluster, tiny_data, tmp_path):
    folder = tmp_path / "cv"
    fold_overrides = [
        o for o in overrides(tiny_data, folder, "phases.0.epochs=1") if "val_dir" not in o
    ]
    submitted = run_cli(
        "cv",
        "-c",
        CONFIG,
        "--folds",
        "3",
        *fold_overrides,
        *("--slurm", "--engine", "horovod", "--tasks-per-node", "1", "--time", "10"),
        env=cli_env(**JOB_ENV, SLURM_CONF=str(cluster.conf)),
    )
    job = re.search(r"submitted array job (\d+) \(3 folds\)", submitted.stdout).group(1)
    summary_job = re.search(r"submitted summary job (\d+)", submitted.stdout).group(1)
    for task in ("0", "1", "2"):
        info = cluster.wait_for_job(f"{job}_{task}")
        assert info["JobState"] == "COMPLETED", (folder / "slurm" / f"{job}_{task}.out").read_text()
    assert cluster.wait_for_job(summary_job)["JobState"] == "COMPLETED"
    summary = json.loads((folder / "cv_summary.json").read_text())
    assert [(row["name"], row["state"]) for row in summary["folds"]] == [
        ("fold-0", "finished"),
        ("fold-1", "finished"),
        ("fold-2", "finished"),
    ]
    assert summary["summary"]["test accuracy"]["n"] == 3
