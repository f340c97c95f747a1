"""Faults during a real `distxfer train`: a diverging loss, a full or read-only disk, a second
run on the same run directory, a typo in a later phase, a run directory whose checkpoints are all
damaged. Each must end with one clear line, a distinct exit status and the last good checkpoint
kept (README "When things fail")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_CLASSES, cli_env, run_cli, tiny_overrides

from distxfer import launchers
from distxfer.checkpoint import CheckpointStore, read_snapshot
from distxfer.errors import EXIT_DIVERGED, EXIT_USAGE, EXIT_WRITE_FAILED

pytestmark = pytest.mark.slow
CONFIG = ("-c", "configs/mnist_mlp.yaml")


def store(run_dir: Path, *, writer: bool = False) -> CheckpointStore:
    return CheckpointStore(run_dir / "checkpoints", keep=3, best_metric="val_loss", writer=writer)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "distxfer: error: " in line]


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distxfer", *args],
        cwd=REPO,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store(run_dir).steps():
            return store(run_dir).steps()[-1]
        if process.poll() is not None:
            pytest.fail(f"training ended first:\n{process.communicate()[1][-4000:]}")
        time.sleep(0.05)
    pytest.fail("no checkpoint in time")


# -- 7. the loss becomes NaN or infinite ----------------------------------------------------------


def test_a_diverging_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_data, tmp_path
):
    run_dir = tmp_path / "run"
    diverge = "phases.0.optimizer=sgd", "phases.0.momentum=0", "phases.0.learning_rate=1e30"
    args = tiny_overrides(tiny_data, run_dir, *diverge, "output.checkpoint_every_steps=1")
    result = run_cli("train", *CONFIG, *args, check=False)
    assert result.returncode == EXIT_DIVERGED, result.stderr[-3000:]
    (line,) = error_lines(result)
    steps = store(run_dir).steps()
    last = store(run_dir).path_for(steps[-1])
    assert (
        f"at global step {steps[-1] + 1} (phase 1 'only', epoch 1, step {steps[-1] + 1} of 18)"
        in line
    )
    assert f"the last good checkpoint is {last}" in line
    for step in steps:  # nothing written after the NaN, every checkpoint finite
        assert all(np.isfinite(a).all() for a in read_snapshot(store(run_dir).path_for(step)).model)
    assert not (run_dir / "model.keras").exists()


def bright_and_dim_images(root: Path, bright: int = 2) -> dict[str, Path]:
    """Dim images (pixels 0..9) that train in float16, and `bright` all-255 images in class
    "red" whose float16 input overflows to inf when scaled by model.rescale=300."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in TINY_CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 10, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    for i in range(bright):
        Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(root / "red" / f"bright{i}.png")
    return root


FLOAT16_OVERFLOW = (
    "precision=mixed_float16",
    "model.rescale=300",
    "data.val_dir=null",
    "data.test_dir=null",
    "phases.0.learning_rate=1e-6",
    "phases.0.epochs=1",
)


def test_skip_leaves_non_finite_batches_out_and_trains_on(tmp_path):
    data = {"train": bright_and_dim_images(tmp_path / "train"), "val": None, "test": None}
    run_dir = tmp_path / "run"
    args = tiny_overrides(data, run_dir, *FLOAT16_OVERFLOW, "nonfinite_loss=skip")
    result = run_cli("train", *CONFIG, *args)
    log = (run_dir / "train.log").read_text()
    skipped = [line for line in log.splitlines() if "the loss was NaN or infinite in" in line]
    assert 1 <= len(skipped) <= 2, log[-3000:]  # the steps that held a bright image
    assert "left out of the update" in skipped[0] and "nonfinite_skip_limit=10" in skipped[0]
    final = store(run_dir).latest()
    assert final.state.finished and final.state.global_step == 7  # 26 images, batches of 4
    assert all(np.isfinite(a).all() for a in final.model)
    assert result.returncode == 0


def test_skip_stops_once_more_batches_than_the_limit_were_left_out(tmp_path):
    data = {"train": bright_and_dim_images(tmp_path / "train"), "val": None, "test": None}
    run_dir = tmp_path / "run"
    limit = ("nonfinite_loss=skip", "nonfinite_skip_limit=0", "data.shuffle=false")
    args = tiny_overrides(data, run_dir, *FLOAT16_OVERFLOW, *limit)
    result = run_cli("train", *CONFIG, *args, check=False)
    assert result.returncode == EXIT_DIVERGED, result.stderr[-3000:]
    (line,) = error_lines(result)
    assert "in 1 batches, more than nonfinite_skip_limit=0, last at global step 7 (phase 1" in line


# -- 6. the disk fills up, or becomes read-only ----------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB file system (tmpfs), unmounted afterwards; needs root with CAP_SYS_ADMIN."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path) -> None:
    """Write zeros until the file system is full."""
    with open(mount / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def two_workers(data, run_dir: Path) -> list[subprocess.Popen]:
    """Two MultiWorkerMirroredStrategy workers started directly, with no supervisor that
    would stop one when the other ends: each must end by itself."""
    overrides = tiny_overrides(
        data,
        run_dir,
        "data.batch_size=1",
        "phases.0.epochs=20",
        "output.checkpoint_every_steps=2",
        "output.stop_check_steps=1",
        "engine.name=multiworker",
        "engine.threads=1",
    )
    program = [sys.executable, "-m", "distxfer", "train", *CONFIG, *overrides]
    return [
        subprocess.Popen(
            spec.argv,
            env=cli_env(**spec.env),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in launchers.tf_config_workers(program, n=2)
    ]


@pytest.mark.distributed
@pytest.mark.parametrize("fault", ["disk full", "read-only"])
def test_a_failed_checkpoint_write_stops_every_rank_naming_the_path(
    fault, small_disk, tiny_data, tmp_path
):
    run_dir = small_disk / "run"
    workers = two_workers(tiny_data, run_dir)
    try:
        wait_for_checkpoint(workers[0], run_dir)
        before = store(run_dir).steps()
        if fault == "disk full":
            fill(small_disk)
        else:  # the folder, as a read-only bind mount of itself (files open elsewhere stay so)
            folder = str(run_dir / "checkpoints")
            subprocess.run(["mount", "--bind", folder, folder], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
        ended = [w.communicate(timeout=120)[1] for w in workers]
    finally:
        for worker in workers:
            worker.kill()
        subprocess.run(["umount", str(run_dir / "checkpoints")], capture_output=True)
    assert [w.returncode for w in workers] == [EXIT_WRITE_FAILED] * 2, ended[0][-3000:]
    reason = "No space left on device" if fault == "disk full" else "Read-only file system"
    for stderr in ended:
        (line,) = [line for line in stderr.splitlines() if "distxfer: error: " in line]
        assert f"could not write checkpoint {run_dir / 'checkpoints'}" in line and reason in line
    previous = store(run_dir).latest()
    assert previous is not None and previous.state.global_step >= before[-1]
    folder = run_dir / "checkpoints"
    if fault == "read-only":
        # A write the remount caught midway cannot delete its temporary file in a read-only
        # folder; the next run's checkpoint store removes it when it starts.
        assert all(".tmp-" in p.name for p in folder.glob(".*"))
        store(run_dir, writer=True)
    assert not list(folder.glob(".*"))


# -- 8. two runs on one run directory -------------------------------------------------------------


def test_a_second_run_on_a_busy_run_directory_refuses_and_a_killed_ones_lock_is_taken_over(
    tiny_data, tmp_path
):
    run_dir = tmp_path / "run"
    args = tiny_overrides(tiny_data, run_dir, "data.batch_size=1", "phases.0.epochs=30")
    first = start_cli("train", *CONFIG, *args, "output.checkpoint_every_steps=5")
    try:
        wait_for_checkpoint(first, run_dir)
        second = run_cli("train", *CONFIG, *args, "output.checkpoint_every_steps=5", check=False)
        assert second.returncode == EXIT_USAGE
        (line,) = error_lines(second)
        assert (
            f"output.run_dir {run_dir} is in use by another training run (pid {first.pid} on "
            in line
        )
        assert line.endswith("wait for it to finish or stop it, or use another output.run_dir")
        assert first.poll() is None, "the second run disturbed the first"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    resumed = start_cli("train", *CONFIG, *args, "output.checkpoint_every_steps=5")
    try:
        started = store(run_dir).steps()[-1]
        deadline = time.monotonic() + 300
        while store(run_dir).steps()[-1] <= started and time.monotonic() < deadline:
            assert resumed.poll() is None, resumed.communicate()[1][-3000:]
            time.sleep(0.1)
        assert store(run_dir).steps()[-1] > started, "the killed run's lock was not taken over"
    finally:
        resumed.kill()
        resumed.communicate()


# -- 11 and 5: found before any training ----------------------------------------------------------


def test_a_typo_in_a_later_phase_is_reported_before_the_first_phase_trains(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    phases = (
        "phases=[{name: head, epochs: 1, trainable: head},"
        " {name: tune, epochs: 1, trainable: 'from:block_16_projectt'}]"
    )
    args = tiny_overrides(
        tiny_data,
        run_dir,
        "model.backbone=MobileNetV2",
        "model.backbone_args={alpha: 0.35}",
        "data.image_size=[32, 32]",
        phases,
    )
    result = run_cli("train", *CONFIG, *args, check=False)
    assert result.returncode == EXIT_USAGE
    (line,) = error_lines(result)
    assert "phases.tune.trainable: the backbone has no layer 'block_16_projectt'" in line
    assert "did you mean block_16_project" in line
    assert store(run_dir).steps() == [] and "Epoch 1/1" not in result.stdout


def test_a_run_directory_whose_checkpoints_are_all_damaged_is_not_trained_over(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    quick = ("phases.0.epochs=1", "data.batch_size=16", "output.tensorboard=false")
    args = tiny_overrides(tiny_data, run_dir, *quick)
    run_cli("train", *CONFIG, *args)
    damaged = {}
    for path in (run_dir / "checkpoints").glob("ckpt-*.npz"):
        path.write_bytes(path.read_bytes()[:100])
        damaged[path] = path.read_bytes()
    result = run_cli("train", *CONFIG, *args, check=False)
    assert result.returncode == EXIT_USAGE
    (line,) = error_lines(result)
    assert "can be read (damaged or truncated)" in line and str(run_dir / "checkpoints") in line
    assert {p: p.read_bytes() for p in damaged} == damaged  # untouched
    assert json.loads((run_dir / "classes.json").read_text()) == list(TINY_CLASSES)
    assert os.path.exists(run_dir / "model.keras")
