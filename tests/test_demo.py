"""The README's main job: `distxfer demo` runs transfer learning end to end on built-in data."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_trains_source_transfer_and_scratch_and_transfer_wins(tmp_path):
    run_dir = tmp_path / "demo"
    result = run_cli("demo", "--run-dir", str(run_dir), timeout=900)
    report = (run_dir / "demo_report.md").read_text()
    assert report in result.stdout
    for run in ("source", "transfer", "scratch"):
        assert (run_dir / run / "checkpoints" / "best.npz").exists()
        assert list((run_dir / run / "tensorboard" / "train").iterdir())
    assert (run_dir / "source" / "backbone.weights.h5").exists()
    transfer = json.loads((run_dir / "transfer" / "eval" / "test.json").read_text())["metrics"][
        "accuracy"
    ]
    scratch = json.loads((run_dir / "scratch" / "eval" / "test.json").read_text())["metrics"][
        "accuracy"
    ]
    assert transfer > scratch + 0.15, report  # pretrained features pay off within the same time
    assert f"tensorboard --logdir {run_dir}" in report
    again = run_cli("demo", "--run-dir", str(run_dir), timeout=300)  # finished runs are not redone
    assert "already finished" in again.stderr and report.splitlines()[6] in again.stdout
