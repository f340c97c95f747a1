"""The built-in demo datasets: deterministic, the promised classes and counts, written once."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from distxfer.config.schema import DataConfig
from distxfer.data import demo
from distxfer.data.demo import SOURCE_CLASSES, TARGET_CLASSES, write_demo_datasets
from distxfer.data.load import load_splits

SMALL = dict(
    source_per_class=3,
    target_train_per_class=2,
    target_val_per_class=1,
    target_test_per_class=1,
    image_size=32,
)


def files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    write_demo_datasets(str(tmp_path / "one"), seed=4, **SMALL)
    write_demo_datasets(str(tmp_path / "two"), seed=4, **SMALL)
    assert files(str(tmp_path / "one")) == files(str(tmp_path / "two"))


def test_drawing_in_worker_processes_writes_the_same_bytes(tmp_path, monkeypatch):
    write_demo_datasets(str(tmp_path / "here"), seed=4, **SMALL)
    monkeypatch.setattr(demo, "_PARALLEL_FROM", 1)  # SMALL is drawn by a process per core
    write_demo_datasets(str(tmp_path / "workers"), seed=4, **SMALL)
    assert files(str(tmp_path / "here")) == files(str(tmp_path / "workers"))


def test_another_seed_draws_other_images(tmp_path):
    write_demo_datasets(str(tmp_path / "one"), seed=4, **SMALL)
    write_demo_datasets(str(tmp_path / "two"), seed=5, **SMALL)
    one, two = files(str(tmp_path / "one")), files(str(tmp_path / "two"))
    images = [k for k in one if not k.endswith(".json")]
    assert sorted(one) == sorted(two) and all(one[k] != two[k] for k in images)


def test_tasks_have_their_classes_and_counts(tmp_path):
    paths = write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    source = load_splits(DataConfig(train_dir=paths.source_train), seed=0)
    target = load_splits(
        DataConfig(
            train_dir=paths.target_train, val_dir=paths.target_val, test_dir=paths.target_test
        ),
        seed=0,
    )
    assert source.class_names == tuple(sorted(SOURCE_CLASSES))
    assert target.class_names == tuple(sorted(TARGET_CLASSES))
    assert not set(SOURCE_CLASSES) & set(TARGET_CLASSES)
    assert source.train.class_counts(len(SOURCE_CLASSES)).tolist() == [3] * len(SOURCE_CLASSES)
    assert [s.class_counts(5).tolist() for s in (target.train, target.val, target.test)] == [
        [2] * 5,
        [1] * 5,
        [1] * 5,
    ]
    assert source.skipped == target.skipped == ()


def test_images_are_rgb_at_the_requested_size(tmp_path):
    paths = write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    for path, fmt in (
        (os.path.join(paths.source_train, "star", "star_0000.png"), "PNG"),
        (os.path.join(paths.target_test, "pair", "pair_0000.jpg"), "JPEG"),
    ):
        image = Image.open(path)
        assert (image.format, image.mode, image.size) == (fmt, "RGB", (32, 32))


def test_a_complete_dataset_is_not_written_again(tmp_path):
    paths = write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    marker = os.path.join(os.path.dirname(paths.source_train), "demo.json")
    before = os.stat(marker).st_mtime_ns
    write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    assert os.stat(marker).st_mtime_ns == before


def test_an_interrupted_write_is_redone(tmp_path):
    paths = write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    os.remove(os.path.join(os.path.dirname(paths.target_train), "demo.json"))
    os.remove(os.path.join(paths.target_train, "heart", "heart_0000.jpg"))
    write_demo_datasets(str(tmp_path), seed=0, **SMALL)
    assert os.path.isfile(os.path.join(paths.target_train, "heart", "heart_0000.jpg"))
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n or ".old" in n]


@pytest.mark.slow
def test_default_sizes_give_a_few_hundred_source_and_few_target_images(tmp_path):
    paths = write_demo_datasets(str(tmp_path), seed=0)
    source = load_splits(DataConfig(train_dir=paths.source_train, val_split=0.1), seed=0)
    target = load_splits(DataConfig(train_dir=paths.target_train), seed=0)
    assert len(source.train) + len(source.val) == len(SOURCE_CLASSES) * 250
    assert len(target.train) == 5 * 30
