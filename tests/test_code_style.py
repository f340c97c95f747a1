"""The code style CI holds us to: ruff's lint and ruff's format, as configured in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

CODE = ["distxfer", "tests"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed; launch/setup.sh installs it (distxfer[dev])")
    return subprocess.run([found, *args, *CODE], cwd=REPO, capture_output=True, text=True)


def test_the_code_passes_ruffs_lint():
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_code_is_ruff_formatted():
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
