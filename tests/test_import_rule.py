"""The import rule (distxfer/__init__.py): what runs before the engine imports no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, cli_env, write_tiny_images

import distxfer


def loaded_frameworks(code: str) -> list[str]:
    """Which of TensorFlow and Keras a fresh interpreter has imported after running `code`."""
    probe = (
        f"{code}\nimport sys; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(), cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_the_modules_that_run_before_the_engine_import_no_tensorflow():
    imports = "\n".join(f"import {name}" for name in distxfer.TENSORFLOW_FREE)
    assert loaded_frameworks(imports) == []


def test_checking_a_config_and_its_data_imports_no_tensorflow(tmp_path):
    write_tiny_images(tmp_path / "train", 3)
    code = f"""
from distxfer.config import load_config
from distxfer.data import load_splits
from distxfer.models import resolve_backbone
from distxfer.run import check_run_dir
config = load_config("configs/resnet50.yaml", ["data.train_dir={tmp_path / "train"}",
                                               "data.val_split=0.34"])
resolve_backbone("resnet50")
check_run_dir(__import__("pathlib").Path({str(tmp_path / "run")!r}), config,
              allow_config_change=False)
load_splits(config.data, config.seed)
"""
    assert loaded_frameworks(code) == []


def test_the_cli_parses_and_reports_bad_input_without_tensorflow():
    code = """
from distxfer.cli import main
assert main(["train", "-c", "configs/mnist_mlp.yaml", "data.batch_sise=4"]) == 2
"""
    assert loaded_frameworks(code) == []
