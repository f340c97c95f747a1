"""Cross-validation (`distxfer cv`): stratified folds of the training folder, one ordinary run per
fold, resumable, the same under two workers, and one table with mean and spread.
(The Slurm array job: test_slurm_jobs.py.)"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env, hparams_experiment, run_cli, tiny_overrides, write_tiny_images

from distxfer.cli import main
from distxfer.config import load_config
from distxfer.cvsummary import spread, t_quantile
from distxfer.data import load_splits
from distxfer.data.listing import stratified_folds
from distxfer.errors import ConfigError, DataError

CONFIG = str(REPO / "configs" / "mnist_mlp.yaml")


def cv_overrides(data: dict[str, Path], folder: Path, *extra: str) -> list[str]:
    """The tiny mlp with no validation folder: the folds are the validation."""
    kept = [o for o in tiny_overrides(data, folder) if not o.startswith("data.val_dir")]
    return [*kept, "phases.0.epochs=1", *extra]


def fold_metrics(folder: Path, fold: int, split: str = "validation") -> dict[str, float]:
    return json.loads((folder / f"fold-{fold}" / "eval" / f"{split}.json").read_text())["metrics"]


@pytest.mark.parametrize(("sizes", "folds"), [((10, 7, 23), 3), ((5, 5, 9, 12), 5), ((4, 4), 2)])
def test_folds_cover_every_sample_once_and_keep_each_class_within_one_image(sizes, folds):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    names = tuple(f"class{i}" for i in range(len(sizes)))
    fold_of = stratified_folds(labels, names, folds, seed=0)
    assert fold_of.shape == labels.shape and set(fold_of) == set(range(folds))
    for label, n in enumerate(sizes):
        per_fold = np.bincount(fold_of[labels == label], minlength=folds)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == n
    fold_sizes = np.bincount(fold_of, minlength=folds)
    assert fold_sizes.max() - fold_sizes.min() <= 1


def test_folds_follow_from_the_files_and_the_seed_alone():
    labels = np.repeat([0, 1], [12, 9])
    first = stratified_folds(labels, ("cat", "dog"), 3, seed=4)
    assert np.array_equal(first, stratified_folds(labels, ("cat", "dog"), 3, seed=4))
    assert not np.array_equal(first, stratified_folds(labels, ("cat", "dog"), 3, seed=5))
    with_bird = stratified_folds(np.repeat([0, 1, 2], [12, 9, 6]), ("cat", "dog", "eel"), 3, 4)
    assert np.array_equal(with_bird[:21], first)  # a new class leaves the others' folds alone


def test_a_fold_run_validates_on_its_fold_and_trains_on_the_rest(tiny_data, tmp_path):
    every, held_out = set(), []
    for fold in range(3):
        config = load_config(
            CONFIG,
            cv_overrides(
                tiny_data, tmp_path, "data.folds=3", f"data.fold={fold}", "data.val_split=0"
            ),
        )
        splits = load_splits(config.data, config.seed)
        train, val = set(splits.train.paths), set(splits.val.paths)
        assert not train & val and len(val) == 24  # 72 images, 8 of each class per fold
        every |= train | val
        held_out.append(val)
    assert len(every) == 72 and len(set().union(*held_out)) == 72  # each image validated once


def test_a_95_percent_interval_uses_students_t_for_few_folds():
    assert t_quantile(4) == 2.776 and t_quantile(1000) == 1.96
    s = spread([0.8, 0.9, 0.7, 0.85, 0.75])
    assert math.isclose(s.mean, 0.8) and math.isclose(s.std, math.sqrt(0.00625))
    assert math.isclose(s.high - s.mean, 2.776 * math.sqrt(0.00625 / 5))


@pytest.fixture(scope="module")
def cross_validated(tiny_data, tmp_path_factory) -> Path:
    """A finished 3-fold cross-validation of the tiny data (with its test folder)."""
    folder = tmp_path_factory.mktemp("cv") / "cv"
    args = [
        "cv",
        "-c",
        CONFIG,
        "--folds",
        "3",
        *cv_overrides(tiny_data, folder),
        "data.val_split=0",
    ]
    assert main(args) == 0
    return folder


def test_cross_validation_trains_every_fold_and_summarises_mean_and_spread(cross_validated):
    folder = cross_validated
    summary = json.loads((folder / "cv_summary.json").read_text())
    assert [row["name"] for row in summary["folds"]] == ["fold-0", "fold-1", "fold-2"]
    assert {row["state"] for row in summary["folds"]} == {"finished"}
    losses = [fold_metrics(folder, i)["loss"] for i in range(3)]
    mean = sum(losses) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in losses) / 2)
    stats = summary["summary"]["val loss"]
    assert math.isclose(stats["mean"], mean) and math.isclose(stats["std"], std)
    assert math.isclose(stats["high"], mean + 4.303 * std / math.sqrt(3))
    tests = [fold_metrics(folder, i, "test")["accuracy"] for i in range(3)]
    assert math.isclose(summary["summary"]["test accuracy"]["mean"], sum(tests) / 3)
    assert "| 95% interval |" in (folder / "cv_summary.md").read_text()


def test_tensorboard_shows_the_folds_side_by_side_with_the_fold_as_a_hyperparameter(
    cross_validated,
):
    experiment = hparams_experiment(cross_validated)
    fold = {h.name: h for h in experiment.hparam_infos}["data.fold"]
    assert (fold.domain_interval.min_value, fold.domain_interval.max_value) == (0, 2)


def test_every_fold_is_evaluated_on_the_whole_test_folder(cross_validated, tiny_data):
    for fold in range(3):
        assert (
            json.loads((cross_validated / f"fold-{fold}" / "eval" / "test.json").read_text())[
                "samples"
            ]
            == 21
        )
    assert main(["evaluate", str(cross_validated / "fold-1")]) == 0  # the test folder, unfolded
    reports = list((cross_validated / "fold-1" / "eval").glob("evaluate_*.json"))
    assert [json.loads(r.read_text())["samples"] for r in reports] == [21]


def test_summary_on_demand_reads_what_the_folds_wrote(tiny_data, tmp_path, capsys):
    folder = tmp_path / "cv"
    args = [
        "cv",
        "-c",
        CONFIG,
        "--folds",
        "2",
        *cv_overrides(tiny_data, folder),
        "data.val_split=0",
    ]
    assert main(args) == 0
    (folder / "cv_summary.json").unlink()
    capsys.readouterr()
    assert main(["cv", "--summary", str(folder)]) == 0
    assert "2 of 2 folds finished" in capsys.readouterr().out
    assert (folder / "cv_summary.json").is_file()


def start_cv(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distxfer", *args],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path_glob: tuple[Path, str], process: subprocess.Popen) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + 240
    while not list(folder.glob(pattern)) and process.poll() is None:
        assert time.monotonic() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.05)
    assert process.poll() is None, "cross-validation ended before it could be stopped"


def three_epoch_folds(tiny_data: dict[str, Path], folder: Path) -> list[str]:
    """2 folds of 3 epochs x 9 steps, a checkpoint every 3 steps."""
    extra = ("phases.0.epochs=3", "output.checkpoint_every_steps=3", "data.val_split=0")
    return ["cv", "-c", CONFIG, "--folds", "2", *cv_overrides(tiny_data, folder, *extra)]


@pytest.mark.slow
def test_a_signalled_cross_validation_exits_75_and_resumes_at_the_fold_and_step(
    tiny_data, tmp_path
):
    folder = tmp_path / "cv"
    args = three_epoch_folds(tiny_data, folder)
    process = start_cv(args)
    wait_for((folder, "fold-1/config.yaml"), process)
    process.send_signal(signal.SIGTERM)  # in fold 1: it checkpoints its step and stops
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr[-3000:]
    assert "stopped in fold 1; run the same command" in stderr
    assert not (folder / "cv_summary.json").exists()
    again = run_cli(*args)
    assert "fold 0 of 2: finished already" in again.stderr
    assert "resuming from step" in (folder / "fold-1" / "train.log").read_text()
    summary = json.loads((folder / "cv_summary.json").read_text())
    assert [row["step"] for row in summary["folds"]] == [27, 27]


@pytest.mark.slow
def test_a_killed_cross_validation_resumes_the_fold_at_its_last_checkpoint(tiny_data, tmp_path):
    folder = tmp_path / "cv"
    args = three_epoch_folds(tiny_data, folder)
    process = start_cv(args)
    wait_for((folder, "fold-1/checkpoints/ckpt-*.npz"), process)
    process.kill()
    process.communicate(timeout=60)
    again = run_cli(*args)
    assert "fold 0 of 2: finished already" in again.stderr
    resumed = re.findall(r"resuming from step (\d+)", (folder / "fold-1" / "train.log").read_text())
    assert len(resumed) == 1 and int(resumed[0]) >= 3
    summary = json.loads((folder / "cv_summary.json").read_text())
    assert [(row["state"], row["step"]) for row in summary["folds"]] == [("finished", 27)] * 2


@pytest.mark.slow
@pytest.mark.distributed
def test_under_two_workers_every_fold_trains_as_with_one(tiny_data, tmp_path):
    args = ["cv", "-c", CONFIG, "--folds", "2", "data.val_split=0", "engine.threads=1"]
    args.append("model.head.dropout=0")  # dropout draws differ between replicas
    one = tmp_path / "one"
    one_process = ["engine.name=mirrored", "engine.cpu_replicas=2"]  # 1 x 2 replicas x 4 images
    run_cli(*args, *cv_overrides(tiny_data, one, *one_process))
    two = tmp_path / "two"
    launcher = [str(REPO / "launch" / "multiworker_local.sh"), "-n", "2", "--"]
    command = [*launcher, sys.executable, "-m", "distxfer", *args, *cv_overrides(tiny_data, two)]
    done = subprocess.run(
        command, env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-4000:]
    for fold in (0, 1):
        for split in ("validation", "test"):
            expected = fold_metrics(one, fold, split)
            got = fold_metrics(two, fold, split)
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--folds", "1"], "--folds must be at least 2 (got 1)"),
        (
            ["--folds", "25"],
            "--folds 25 is more than the 24 image(s) of class 'blue', so some fold would not"
            " validate it; use at most 24 folds or add images to the class",
        ),
        (
            ["--folds", "3", "data.val_split=0.2"],
            "data.val_split is set, but the folds replace it (each fold validates on its own part"
            " of data.train_dir); remove data.val_split from the config or pass data.val_split=0",
        ),
        (["data.val_split=0"], "distxfer cv needs -c CONFIG and --folds K (or --summary CV_DIR)"),
    ],
)
def test_bad_cross_validation_input_is_one_line_before_anything_is_written(
    extra, message, tiny_data, tmp_path, capsys
):
    folder = tmp_path / "cv"
    assert main(["cv", "-c", CONFIG, *cv_overrides(tiny_data, folder), *extra]) == 2
    assert capsys.readouterr().err == f"distxfer: error: {message}\n"
    assert not folder.exists()


def test_a_validation_folder_in_the_config_is_refused(tiny_data, tmp_path, capsys):
    args = ["cv", "-c", CONFIG, "--folds", "3", *tiny_overrides(tiny_data, tmp_path / "cv")]
    assert main(args) == 2
    assert (
        "distxfer: error: data.val_dir is set, but the folds replace it" in capsys.readouterr().err
    )


def test_tfrecords_are_refused_with_what_to_use_instead(tiny_data, tmp_path, capsys):
    records = tmp_path / "records"
    records.mkdir()
    (records / "meta.json").write_text("{}")
    args = ["cv", "-c", CONFIG, "--folds", "3", *cv_overrides(tiny_data, tmp_path / "cv")]
    assert main([*args, "data.val_split=0", f"data.train_dir={records}"]) == 2
    assert capsys.readouterr().err == (
        f"distxfer: error: data.train_dir {records} holds TFRecords; cross-validation splits"
        " class folders: point data.train_dir at the class folders the records were converted"
        " from\n"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.folds=1"], "data.folds: must be 0 (off) or at least 2"),
        (["data.folds=3", "data.fold=3"], "data.fold: must be a fold number from 0 to 2"),
        (["data.folds=3", "data.val_split=0.2"], "data.folds: replaces data.val_dir and"),
    ],
)
def test_fold_keys_are_checked_when_the_config_loads(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(CONFIG, ["data.val_split=0", *overrides])


def test_a_small_class_is_named_when_a_fold_config_asks_too_many_folds(tmp_path):
    data = write_tiny_images(tmp_path / "few", 2)
    config = load_config(CONFIG, [f"data.train_dir={data}", "data.val_split=0", "data.folds=3"])
    with pytest.raises(DataError, match="class 'blue' has 2 image\\(s\\), fewer than data.folds=3"):
        load_splits(config.data, config.seed)
