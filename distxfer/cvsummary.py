"""The table of a cross-validation folder (`distxfer cv`): every fold, then mean and spread.

Per fold: its state, step, the best validation metric its checkpoints recorded, the final
validation metrics and the test metrics (from `eval/`). Then per column the mean, the sample
standard deviation and a 95% interval for the mean (Student's t with K - 1 degrees of freedom,
since K folds are few), over the folds that have the value. Written as `cv_summary.md` and
`cv_summary.json` in the folder; the folds' own TensorBoard logs carry `data.fold` as a
hyperparameter, so `tensorboard --logdir CV_DIR` shows them side by side in the HParams tab.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distxfer.atomic import write_bytes
from distxfer.errors import ConfigError
from distxfer.runs import latest_state, read_metrics, run_state
from distxfer.sweeps import Sweep

SUMMARY_MD = "cv_summary.md"
SUMMARY_JSON = "cv_summary.json"
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom, then a few beyond.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
T_975 += (2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)
T_975 += (2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
T_975_BEYOND = ((40, 2.021), (60, 2.000), (120, 1.980))
NORMAL_975 = 1.960


@dataclass
class FoldRow:
    """What the table shows of one fold."""

    name: str
    state: str
    step: int | None
    values: dict[str, float] = field(default_factory=dict)  # column -> value


@dataclass
class Spread:
    """Mean, sample standard deviation and 95% interval of one column over `n` folds."""

    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass
class CVSummary:
    folds: list[FoldRow]
    columns: list[str]
    spread: dict[str, Spread]

    def to_json(self) -> dict[str, Any]:
        return {
            "folds": [vars(row) for row in self.folds],
            "summary": {column: vars(s) for column, s in self.spread.items()},
        }


def t_quantile(degrees: int) -> float:
    """The 97.5% quantile of Student's t (the half-width factor of a 95% interval)."""
    if degrees <= len(T_975):
        return T_975[degrees - 1]
    return next((t for limit, t in T_975_BEYOND if degrees <= limit), NORMAL_975)


def spread(values: list[float]) -> Spread:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Spread(n, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return Spread(n, mean, std, mean - half, mean + half)


def summarize_folds(folder: Path) -> CVSummary:
    """The summary of the cross-validation folder `folder`, read from what its folds wrote."""
    sweep = Sweep.read(Path(folder))
    if sweep is None:
        raise ConfigError(f"{folder} is not a cross-validation folder (no sweep.json in it)")
    rows, columns = [], {}
    for trial in sweep.trials:
        run_dir = sweep.run_dir(trial)
        state = latest_state(run_dir)
        row = FoldRow(trial.name, run_state(run_dir, None), state.global_step if state else None)
        if state is not None and state.best is not None:
            row.values[f"best {state.best.metric}"] = state.best.value
        for split, short in (("validation", "val"), ("test", "test")):
            for name, value in read_metrics(run_dir, split).items():
                row.values[f"{short} {name}"] = float(value)
        columns.update(dict.fromkeys(row.values))
        rows.append(row)
    spreads = {
        column: spread([row.values[column] for row in rows if column in row.values])
        for column in columns
    }
    return CVSummary(rows, list(columns), spreads)


def write_summary(folder: Path) -> CVSummary:
    """Summarise `folder` and write the summary into it as Markdown and JSON."""
    summary = summarize_folds(folder)
    text = json.dumps(summary.to_json(), indent=1, allow_nan=True) + "\n"
    write_bytes(Path(folder) / SUMMARY_JSON, text.encode())
    write_bytes(Path(folder) / SUMMARY_MD, (render_summary(summary) + "\n").encode())
    return summary


def render_summary(summary: CVSummary) -> str:
    """The summary as a Markdown table: one row per fold, then mean, std and the 95% interval."""

    def number(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.4f}"

    head = ["fold", "state", "step", *summary.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary.folds:
        cells = [row.name, row.state, "-" if row.step is None else str(row.step)]
        cells += [number(row.values.get(column)) for column in summary.columns]
        lines.append("| " + " | ".join(cells) + " |")
    stats = {column: summary.spread[column] for column in summary.columns}
    for label, cell in (
        ("mean", lambda s: number(s.mean)),
        ("std", lambda s: number(s.std)),
        ("95% interval", lambda s: f"{number(s.low)} to {number(s.high)}"),
    ):
        cells = [label, "", ""] + [cell(s) for s in stats.values()]
        lines.append("| " + " | ".join(cells) + " |")
    finished = sum(row.state == "finished" for row in summary.folds)
    lines.append("")
    lines.append(
        f"{finished} of {len(summary.folds)} folds finished; each column's mean, std and interval"
        " are over the folds that have it (95% interval: Student's t with n - 1 degrees of"
        " freedom)."
    )
    return "\n".join(lines)
