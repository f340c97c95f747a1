"""Weights from a distxfer run (`model.weights: RUN_DIR[:best]`), checked before TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distxfer.checkpoint import CheckpointStore, Snapshot
from distxfer.config import dump_config, load_config
from distxfer.errors import ConfigError
from distxfer.models.pretrained import WeightsSource, check_model_sources, weights_source
from distxfer.train.state import DataOrder, Position, RunState

BACKBONE = ["model.backbone=MobileNet", "model.backbone_args={alpha: 0.25}"]


def make_run(root: Path, *overrides: str, finished: bool = True, best: bool = True) -> Path:
    """A run directory as `distxfer train` leaves it: resolved config and a checkpoint."""
    root.mkdir(parents=True)
    config = load_config(None, ["data.image_size=[32, 32]", *BACKBONE, *overrides])
    (root / "config.yaml").write_text(dump_config(config))
    (root / "classes.json").write_text('["a", "b"]')
    store = CheckpointStore(root / "checkpoints", keep=2, best_metric="val_accuracy", writer=True)
    reason = "final" if finished else "time"
    state = RunState(Position(0, 1, 0, 9), reason, finished, -1, DataOrder(0, 8, 1, 72, "f"))
    store.save(Snapshot(state, [np.zeros(2, np.float32)], []), is_best=best)
    store.wait()
    return root


def target(weights: str):
    return load_config(None, ["data.image_size=[32, 32]", *BACKBONE, f"model.weights={weights}"])


def test_weights_name_imagenet_nothing_a_file_or_a_run(tmp_path):
    run = make_run(tmp_path / "run")
    assert weights_source("imagenet") == WeightsSource("imagenet")
    assert weights_source(None) == WeightsSource("none")
    assert weights_source(str(tmp_path / "b.weights.h5")).kind == "file"
    assert weights_source(str(run)) == WeightsSource("run", run, "final")
    assert weights_source(f"{run}:best") == WeightsSource("run", run, "best")


def test_a_finished_run_with_the_same_backbone_is_accepted(tmp_path):
    run = make_run(tmp_path / "run")
    check_model_sources(target(str(run)).model)
    check_model_sources(target(f"{run}:best").model)


def test_a_run_of_another_backbone_shape_is_refused_naming_both(tmp_path):
    run = make_run(tmp_path / "run", "model.backbone_args={alpha: 0.5}")
    with pytest.raises(ConfigError) as err:
        check_model_sources(target(str(run)).model)
    message = str(err.value)
    assert message.startswith(f"model.weights: the run {run} trained MobileNet with backbone_args")
    assert "{'alpha': 0.5}, but this config builds MobileNet with {'alpha': 0.25}" in message


def test_an_mlp_run_has_no_backbone_to_give(tmp_path):
    run = make_run(tmp_path / "run", "model.backbone=mlp", "model.backbone_args={}")
    with pytest.raises(ConfigError, match="trained the mlp model, which has no backbone"):
        check_model_sources(target(str(run)).model)


def test_an_unfinished_run_gives_its_best_checkpoint_only(tmp_path):
    run = make_run(tmp_path / "run", finished=False)
    with pytest.raises(ConfigError, match=rf"the run {run} has not finished .* or use {run}:best"):
        check_model_sources(target(str(run)).model)
    check_model_sources(target(f"{run}:best").model)


def test_a_run_without_a_best_checkpoint_says_so(tmp_path):
    run = make_run(tmp_path / "run", best=False)
    with pytest.raises(ConfigError, match="has no best checkpoint"):
        check_model_sources(target(f"{run}:best").model)


def test_a_folder_that_is_not_a_run_or_a_missing_file_is_named(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="is not a distxfer run directory"):
        check_model_sources(target(str(tmp_path / "folder")).model)
    with pytest.raises(ConfigError, match="weights file .*nope.weights.h5 does not exist"):
        check_model_sources(target(str(tmp_path / "nope.weights.h5")).model)
