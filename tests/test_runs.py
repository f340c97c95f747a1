"""`distxfer runs`: one table of a sweep's runs, read from the files the runs wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distxfer import runs
from distxfer.checkpoint import CheckpointStore, Snapshot
from distxfer.cli import main
from distxfer.config import dump_config, load_config
from distxfer.status import write_status
from distxfer.sweeps import Sweep, grid, parse_axis
from distxfer.train.state import BestMetric, DataOrder, Position, RunState

CONFIG = "configs/mnist_mlp.yaml"


@pytest.fixture(autouse=True)
def no_slurm(monkeypatch):
    """No Slurm queue unless a test sets one."""
    monkeypatch.setattr(runs, "slurm_jobs", lambda: None)


def write_run(
    run_dir: Path,
    overrides: list[str],
    *,
    state: str | None,
    step: int = 0,
    finished: bool = False,
    reason: str = "interval",
    metrics: dict[str, dict[str, float]] | None = None,
) -> None:
    """A run directory as `distxfer train` leaves it: config, status, a checkpoint, reports."""
    run_dir.mkdir(parents=True)
    config = load_config(CONFIG, [*overrides, f"output.run_dir={run_dir}"])
    (run_dir / "config.yaml").write_text(dump_config(config))
    if state:
        write_status(run_dir, state)
    if step:
        store = CheckpointStore(run_dir / "checkpoints", keep=2, best_metric="", writer=True)
        position = Position(0, step // 9, step % 9, step)
        best = BestMetric("val_accuracy", 0.9, 9)
        data = DataOrder(0, 8, 2, 72, "abc")
        record = RunState(position, reason, finished, 0, data, best)  # type: ignore[arg-type]
        store.save(Snapshot(record, [np.zeros(2, np.float32)], []), is_best=False)
        store.wait()
    for split, values in (metrics or {}).items():
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / f"{split}.json").write_text(json.dumps({"metrics": values}))


def test_a_sweep_table_shows_each_runs_overrides_state_and_metrics(tmp_path, capsys):
    sweep = Sweep(tmp_path, CONFIG, [], grid([parse_axis("phases.0.learning_rate=0.1,0.2,0.3")]))
    sweep.write()
    first, second, _third = (sweep.run_dir(t) for t in sweep.trials)
    write_run(
        first,
        ["phases.0.learning_rate=0.1"],
        state="finished",
        step=18,
        finished=True,
        reason="final",
        metrics={"validation": {"accuracy": 0.8, "loss": 0.5}, "test": {"accuracy": 0.75}},
    )
    write_run(second, ["phases.0.learning_rate=0.2"], state="preempted", step=13, reason="signal")
    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "run",
        "overrides",
        "state",
        "step",
        "best",
        "val",
        "acc",
        "val",
        "loss",
        "test",
        "acc",
    ]
    assert lines[1].split() == [
        "000_learning_rate=0.1",
        "phases.0.learning_rate=0.1",
        "finished",
        "18",
        "val_accuracy",
        "0.9000",
        "@9",
        "0.8000",
        "0.5",
        "0.7500",
    ]
    assert lines[2].split()[2:4] == ["preempted", "13"]
    pending = ["002_learning_rate=0.3", "phases.0.learning_rate=0.3", "pending"]
    assert lines[3].split() == [*pending, "-", "-", "-", "-", "-"]


def test_a_folder_of_runs_shows_the_config_keys_that_differ(tmp_path):
    write_run(tmp_path / "a", ["seed=1"], state="finished")
    write_run(tmp_path / "b", ["seed=2", "data.batch_size=8"], state="running")
    rows = runs.summarize(tmp_path)
    assert [(r.name, r.overrides) for r in rows] == [
        ("a", "data.batch_size=128 seed=1"),
        ("b", "data.batch_size=8 seed=2"),
    ]


def test_a_running_run_whose_process_is_gone_has_failed(tmp_path, monkeypatch):
    write_run(tmp_path / "run", [], state="running")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    record = json.loads((tmp_path / "run" / "status.json").read_text())
    record["pid"] = int(gone.stdout)
    (tmp_path / "run" / "status.json").write_text(json.dumps(record))
    assert runs.summarize(tmp_path / "run")[0].state == "failed (process gone)"


def test_a_running_slurm_run_whose_job_left_the_queue_has_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    write_run(tmp_path / "run", [], state="running")
    monkeypatch.setattr(runs, "slurm_jobs", lambda: {"77": "RUNNING"})
    assert runs.summarize(tmp_path)[0].state == "running"
    monkeypatch.setattr(runs, "slurm_jobs", lambda: {"78": "RUNNING"})
    assert runs.summarize(tmp_path)[0].state == "failed (job ended)"


def test_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 2
    assert "holds no distxfer runs (no config.yaml in it or below it)" in capsys.readouterr().err
