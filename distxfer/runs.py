"""`distxfer runs FOLDER`: one table of the runs in a sweep folder (or any folder of run
directories, or one run directory), read from what the runs wrote.

Each row: the run, its overrides (from `sweep.json`; elsewhere the config keys that differ
between the runs), its state, its step, the best validation metric and the step that reached it
(from the newest checkpoint), the final validation metrics and the test accuracy (from `eval/`).
The state comes from `status.json` (`distxfer.status`), refined by what else is known: a run
recorded as running whose Slurm job is no longer queued, or whose process on this machine is
gone, has failed; a run of a sweep that has no run directory yet is pending.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

import numpy as np
import yaml

from distxfer.checkpoint import CheckpointStore
from distxfer.config import config_differences
from distxfer.errors import ConfigError, DistxferError
from distxfer.status import read_status
from distxfer.sweeps import Sweep
from distxfer.train.state import RunState


@dataclass
class RunRow:
    """What the table shows of one run."""

    name: str
    overrides: str
    state: str
    step: int | None = None
    best: str = ""
    val_accuracy: float | None = None
    val_loss: float | None = None
    test_accuracy: float | None = None


def summarize(folder: Path) -> list[RunRow]:
    """The rows for `folder`: a sweep folder, a folder of run directories, or one run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass a sweep folder or a run directory")
    queued = slurm_jobs()
    sweep = Sweep.read(folder)
    if sweep is not None:
        return [
            summarize_run(sweep.run_dir(t), t.name, " ".join(t.overrides), queued)
            for t in sweep.trials
        ]
    runs = [folder] if is_run_dir(folder) else sorted(p for p in folder.iterdir() if is_run_dir(p))
    if not runs:
        raise ConfigError(f"{folder} holds no distxfer runs (no config.yaml in it or below it)")
    differing = differing_keys([read_config(run) for run in runs])
    rows = []
    for run in runs:
        flat = flatten(read_config(run))
        overrides = " ".join(f"{key}={flat.get(key)}" for key in differing)
        rows.append(summarize_run(run, run.name, overrides, queued))
    return rows


def summarize_run(
    run_dir: Path, name: str, overrides: str, queued: dict[str, str] | None
) -> RunRow:
    row = RunRow(name, overrides, run_state(run_dir, queued))
    state = latest_state(run_dir)
    if state is not None:
        row.step = state.global_step
        if state.best is not None:
            best = state.best
            row.best = f"{best.metric} {best.value:.4f} @{best.global_step}"
    validation, test = read_metrics(run_dir, "validation"), read_metrics(run_dir, "test")
    row.val_accuracy, row.val_loss = validation.get("accuracy"), validation.get("loss")
    row.test_accuracy = test.get("accuracy")
    return row


def run_state(run_dir: Path, queued: dict[str, str] | None) -> str:
    """running, preempted, finished or failed (pending: not started)."""
    status = read_status(run_dir)
    if status is None:
        if not (run_dir / "config.yaml").is_file():
            return "pending"
        state = latest_state(run_dir)  # a run from before status files, or one starting up
        if state is None:
            return "running"
        return "finished" if state.finished else "preempted" if state.reason == "signal" else "?"
    job, state = status.get("slurm_job"), status["state"]
    if state == "preempted" and queued and job in queued:
        return "preempted (requeued)"
    if state == "running":
        if job and queued is not None and job not in queued:
            return "failed (job ended)"
        if not job and status.get("host") == socket.gethostname() and not alive(status.get("pid")):
            return "failed (process gone)"
    return state


def slurm_jobs() -> dict[str, str] | None:
    """Queued and running Slurm jobs (id: state), or None without a usable squeue."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%A %T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if " " in line)


def alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def latest_state(run_dir: Path) -> RunState | None:
    """The state of the newest readable checkpoint (only its state is read, not its arrays)."""
    store = CheckpointStore(run_dir / "checkpoints", keep=1, best_metric="", writer=False)
    for step in reversed(store.steps()):
        try:
            with np.load(store.path_for(step), allow_pickle=False) as data:
                return RunState.from_json(json.loads(str(data["state"])), str(run_dir))
        except (OSError, ValueError, KeyError, TypeError, EOFError, BadZipFile, DistxferError):
            # a torn or foreign file: try the one before
            continue
    return None


def read_metrics(run_dir: Path, split: str) -> dict[str, float]:
    try:
        return dict(json.loads((run_dir / "eval" / f"{split}.json").read_text())["metrics"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose values differ between any of the configs (the run directory aside)."""
    keys: set[str] = set()
    for other in configs[1:]:
        keys.update(config_differences(configs[0], other))
    return sorted(key for key in keys if key != "output.run_dir")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values, list items by index (as `config_differences` names them)."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list) and tree and all(isinstance(x, dict) for x in tree):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


COLUMNS = (
    ("run", "name"),
    ("overrides", "overrides"),
    ("state", "state"),
    ("step", "step"),
    ("best", "best"),
    ("val acc", "val_accuracy"),
    ("val loss", "val_loss"),
    ("test acc", "test_accuracy"),
)


def render(rows: list[RunRow]) -> str:
    """The rows as an aligned plain-text table ('-' where a value is not known yet)."""

    def cell(value: Any, attr: str) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}" if attr.endswith("loss") else f"{value:.4f}"
        return str(value)

    table = [[title for title, _ in COLUMNS]]
    table += [[cell(getattr(row, attr), attr) for _, attr in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in table
    )
