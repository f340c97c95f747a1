"""Transfer from your own runs, end to end on real files: a run's backbone starts the next run,
chains of runs, `export --format backbone`, and early stopping on a rising validation loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, tiny_overrides

from distxfer.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow
MOBILENET = [
    "model.backbone=MobileNet",
    "model.backbone_args={alpha: 0.25}",
    "data.image_size=[32, 32]",
    "model.head.pooling=avg",
    "output.image_grid=0",
    "output.tensorboard=false",
]
HEAD = "phases=[{name: head, epochs: 1, trainable: head, learning_rate: 0.01}]"


def train(data: dict, run_dir: Path, *extra: str, check: bool = True):
    args = tiny_overrides(data, run_dir, *MOBILENET, *extra)
    return run_cli("train", "-c", "configs/mnist_mlp.yaml", *args, check=check)


def backbone_arrays(run_dir: Path, which: str = "final") -> list[np.ndarray]:
    """The backbone's weights in a run's final (or best) checkpoint, as the model holds them."""
    from distxfer.inference import trained_model
    from distxfer.models import backbone_of

    model, *_ = trained_model(run_dir, which)
    return [np.asarray(v) for v in backbone_of(model).get_weights()]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def pretrained(tiny_data, tmp_path_factory) -> Path:
    """A MobileNet trained from scratch on the tiny colours: the first run of every chain."""
    run_dir = tmp_path_factory.mktemp("chain") / "source"
    scratch = "phases=[{name: all, epochs: 1, trainable: all, learning_rate: 0.01}]"
    train(tiny_data, run_dir, "model.weights=null", "model.batchnorm=train", scratch)
    return run_dir


def test_runs_chain_a_backbone_from_run_to_run(pretrained, tiny_data, tmp_path):
    second, third = tmp_path / "second", tmp_path / "third"
    train(tiny_data, second, f"model.weights={pretrained}", HEAD)
    train(tiny_data, third, f"model.weights={second}:best", HEAD)
    source = backbone_arrays(pretrained)
    assert_same(backbone_arrays(second), source)  # a head phase leaves the backbone as it came
    assert_same(backbone_arrays(third), backbone_arrays(second, "best"))
    assert_same(backbone_arrays(third), source)


def test_a_run_of_another_backbone_is_refused_before_training(pretrained, tiny_data, tmp_path):
    result = train(
        tiny_data,
        tmp_path / "other",
        f"model.weights={pretrained}",
        "model.backbone_args={alpha: 0.5}",
        HEAD,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"distxfer: error: model.weights: the run {pretrained} trained MobileNet with"
        " backbone_args {'alpha': 0.25}, but this config builds MobileNet with {'alpha': 0.5};"
        " set model.backbone: MobileNet and model.backbone_args: {'alpha': 0.25}"
    )
    assert not (tmp_path / "other" / "checkpoints").exists()


def test_an_exported_backbone_starts_a_run_as_a_keras_file(pretrained, tiny_data, tmp_path):
    out = tmp_path / "export"
    run_cli("export", str(pretrained), "--format", "backbone", "-o", str(out))
    assert {p.name for p in out.iterdir()} == {
        "backbone.weights.h5",
        "backbone.keras",
        "backbone.json",
    }
    run_dir = tmp_path / "from_file"
    train(
        tiny_data,
        run_dir,
        f"model.backbone={out / 'backbone.keras'}",
        "model.backbone_layer=backbone",
        "model.backbone_args={}",
        "model.weights=null",
        "phases=[{name: top, epochs: 1, trainable: 'from:conv_pw_13', learning_rate: 0.01}]",
    )
    log = (run_dir / "train.log").read_text()
    assert "backbone from conv_pw_13" in log  # from:LAYER reaches into the file's nested backbone
    learned, source = backbone_arrays(run_dir), backbone_arrays(pretrained)
    assert len(learned) == len(source)
    assert all(np.array_equal(a, b) for a, b in zip(learned[:-8], source[:-8]))  # before the cut
    assert not all(np.array_equal(a, b) for a, b in zip(learned, source))


EARLY = (
    "phases=[{name: a, epochs: 8, trainable: all, learning_rate: 0.01,"
    " early_stopping: {metric: val_loss, patience: 2}},"
    " {name: b, epochs: 1, trainable: head, learning_rate: 1.0e-9}]"
)


def early_run(data: dict, run_dir: Path, val: Path, *extra: str):
    args = tiny_overrides(data, run_dir, f"data.val_dir={val}", "output.image_grid=0", EARLY)
    return run_cli("train", "-c", "configs/mnist_mlp.yaml", *args, *extra)


@pytest.fixture(scope="module")
def stopped_early(tiny_data, swapped_val, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("early") / "run"
    early_run(tiny_data, run_dir, swapped_val)
    return run_dir


def test_a_rising_validation_loss_stops_the_phase_on_its_best_weights(stopped_early):
    log = (stopped_early / "train.log").read_text()
    assert "phase 'a' stops early: val_loss has not improved by more than 0 for 2 epoch(s);" in log
    assert "phase 1 ends on the weights of step 18" in log  # epoch 1 of 18 steps was the best
    store = CheckpointStore(stopped_early / "checkpoints", keep=9, best_metric="", writer=False)
    final, best = store.latest(), store.linked("phase_best.npz")
    assert final.state.finished and final.state.global_step == 3 * 18 + 18  # 3 epochs, then b
    assert best.state.global_step == 18
    weights = [(a, b) for a, b in zip(final.model, best.model) if a.dtype.kind == "f"]
    assert len(weights) == 4  # two Dense layers (a dropout's seed state is the other array)
    for got, want in weights:  # phase b, at a rate of 1e-9, starts from the best weights
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_early_stopping_keeps_its_patience_across_preemptions(
    stopped_early, tiny_data, swapped_val, tmp_path
):
    run_dir, val = tmp_path / "run", swapped_val
    stop_each_epoch = ["max_train_seconds=0.001", "output.stop_check_steps=1000"]
    for _ in range(2):  # each run trains one epoch, then stops on the time limit
        early_run(tiny_data, run_dir, val, *stop_each_epoch)
    early_run(tiny_data, run_dir, val)
    store = CheckpointStore(run_dir / "checkpoints", keep=9, best_metric="", writer=False)
    straight = CheckpointStore(stopped_early / "checkpoints", keep=9, best_metric="", writer=False)
    final, want = store.latest(), straight.latest()
    assert final.state.global_step == want.state.global_step
    for got, expected in zip(final.model, want.model):
        np.testing.assert_allclose(got, expected, atol=1e-6)
