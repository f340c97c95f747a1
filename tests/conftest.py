"""Shared fixtures: tiny learnable image datasets on disk, running the real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CLASSES = ("blue", "green", "red")


def write_tiny_images(root: Path, per_class: int, *, size: int = 16, seed: int = 0) -> Path:
    """Class folders of small PNGs whose dominant colour is the class: learnable in a few steps."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(TINY_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3))
            pixels[..., 2 - label] += 150  # blue, green, red channel dominates
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                folder / f"{name}_{i:03d}.png"
            )
    return root


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """distxfer's cache folder (scan verdicts, shared listings, images) for this test session
    only, never the user's own; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("distxfer-cache")
    os.environ["DISTXFER_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """train (3 classes x 24), val (3 x 5) and test (3 x 7) folders; sizes that divide unevenly."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        "train": write_tiny_images(root / "train", 24, seed=1),
        "val": write_tiny_images(root / "val", 5, seed=2),
        "test": write_tiny_images(root / "test", 7, seed=3),
    }


@pytest.fixture(scope="session")
def swapped_val(tiny_data, tmp_path_factory) -> Path:
    """The validation images with their classes swapped round: as training learns the colours,
    the validation loss rises (for early stopping)."""
    root = tmp_path_factory.mktemp("swapped") / "val"
    for name, other in zip(TINY_CLASSES, TINY_CLASSES[1:] + TINY_CLASSES[:1]):
        shutil.copytree(tiny_data["val"] / name, root / other)
    return root


def tiny_overrides(data: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    """A small, fast MobileNetV2-free run: the mlp on 16x16 images."""
    return [
        f"data.train_dir={data['train']}",
        f"data.val_dir={data['val']}",
        "data.val_split=0",
        f"data.test_dir={data['test']}",
        "data.cache=none",
        "data.color_mode=rgb",
        "data.image_size=[16, 16]",
        "data.batch_size=4",
        "model.backbone=mlp",
        "model.weights=null",
        "model.head.hidden_units=32",
        "model.head.pooling=flatten",
        f"output.run_dir={run_dir}",
        "output.log_every_steps=5",
        "output.image_grid=8",
        "phases=[{name: only, epochs: 2, trainable: all, learning_rate: 0.01, lr_scaling: none}]",
        *extra,
    ]


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """`python -m distxfer ARGS` in a fresh process; fails the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "distxfer", *args],
        env=env or cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"distxfer {' '.join(args[:2])} exited {result.returncode}"
            f"\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def hparams_experiment(logdir: Path):  # type: ignore[no-untyped-def]
    """What TensorBoard's HParams tab shows for `logdir`: hparams and metrics of every run."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(logdir))
    events.Reload()
    provider = data_provider.MultiplexerDataProvider(events, str(logdir))
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=events, data_provider=provider)
    hparams, request = backend_context.Context(tb), context.RequestContext()
    metadata = hparams.hparams_metadata(request, "")
    listed = hparams.hparams_from_data_provider(request, "", None)
    return hparams.experiment_from_metadata(request, "", True, metadata, listed)
