"""Listing class folders, splitting them, and the errors `load_splits` raises before training."""

from __future__ import annotations

import os

import numpy as np
import pytest
from imagefiles import class_tree, encode, noise, write

from distxfer.config.schema import DataConfig
from distxfer.data.listing import list_class_folder, stratified_split
from distxfer.data.load import load_splits
from distxfer.data.splits import FolderSplit
from distxfer.errors import DataError

PNG = encode(noise(4, 4), "PNG")


def names(split: FolderSplit, root) -> list[str]:
    return [os.path.relpath(p, root) for p in split.paths]


def test_classes_are_subfolders_in_plain_sorted_order(tmp_path):
    class_tree(tmp_path, {"b": 1, "a b": 1, "C": 1, "a": 1})
    class_names, split = list_class_folder(str(tmp_path))
    assert class_names == ("C", "a", "a b", "b")
    assert split.labels.tolist() == [0, 1, 2, 3]


def test_files_are_listed_recursively_in_keras_order(tmp_path):
    for rel in [
        "cat/z.png",
        "cat/a.png",
        "cat/sub/b.png",
        "cat/sub b/c.png",
        "cat/sub/deeper/d.png",
    ]:
        write(tmp_path / rel, PNG)
    _, split = list_class_folder(str(tmp_path))
    # Keras sorts directories by path string ("cat/sub" < "cat/sub b" < "cat/sub/deeper"),
    # then files within each.
    assert names(split, tmp_path) == [
        "cat/a.png",
        "cat/z.png",
        "cat/sub/b.png",
        "cat/sub b/c.png",
        "cat/sub/deeper/d.png",
    ]


def test_extensions_match_case_insensitively_and_other_files_are_ignored(tmp_path):
    for rel in [
        "dog/1.JPG",
        "dog/2.Png",
        "dog/3.jpeg",
        "dog/4.BMP",
        "dog/5.gif",
        "dog/notes.txt",
        "dog/6.webp",
        "dog/7.tiff",
    ]:
        write(tmp_path / rel, PNG)
    _, split = list_class_folder(str(tmp_path))
    assert names(split, tmp_path) == [
        "dog/1.JPG",
        "dog/2.Png",
        "dog/3.jpeg",
        "dog/4.BMP",
        "dog/5.gif",
    ]


def test_hidden_files_and_folders_are_not_data(tmp_path):
    for rel in ["dog/1.png", "dog/._1.png", "dog/.thumbs/2.png", ".ipynb_checkpoints/x.png"]:
        write(tmp_path / rel, PNG)
    class_names, split = list_class_folder(str(tmp_path))
    assert class_names == ("dog",)
    assert names(split, tmp_path) == ["dog/1.png"]


def test_linked_folders_are_followed_only_with_follow_links(tmp_path):
    write(tmp_path / "elsewhere" / "x.png", PNG)
    write(tmp_path / "data" / "cat" / "own.png", PNG)
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "cat" / "linked")
    _, plain = list_class_folder(str(tmp_path / "data"))
    _, followed = list_class_folder(str(tmp_path / "data"), follow_links=True)
    assert names(plain, tmp_path / "data") == ["cat/own.png"]
    assert names(followed, tmp_path / "data") == ["cat/own.png", "cat/linked/x.png"]


def test_a_link_loop_is_listed_once(tmp_path):
    write(tmp_path / "cat" / "a.png", PNG)
    os.symlink(tmp_path / "cat", tmp_path / "cat" / "loop")
    _, split = list_class_folder(str(tmp_path), follow_links=True)
    assert names(split, tmp_path) == ["cat/a.png"]


def test_missing_folder_is_named_in_the_error(tmp_path):
    with pytest.raises(DataError, match=r"data.train_dir: .*nope does not exist"):
        list_class_folder(str(tmp_path / "nope"))


def test_a_file_instead_of_a_folder_is_an_error(tmp_path):
    write(tmp_path / "x.png", PNG)
    with pytest.raises(DataError, match="is a file, not a folder"):
        list_class_folder(str(tmp_path / "x.png"))


def test_images_without_class_folders_are_an_error(tmp_path):
    write(tmp_path / "x.png", PNG)
    with pytest.raises(DataError, match="has no class folders"):
        list_class_folder(str(tmp_path))


def test_an_empty_class_folder_is_named_in_the_error(tmp_path):
    class_tree(tmp_path, {"full": 2})
    write(tmp_path / "hollow" / "readme.txt", b"nothing here")
    with pytest.raises(DataError, match="'hollow'.*hold no images"):
        list_class_folder(str(tmp_path))


def test_split_holds_out_the_fraction_of_every_class():
    labels = np.repeat(np.arange(3), [10, 20, 5]).astype(np.int32)
    train, val = stratified_split(labels, ("a", "b", "c"), 0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(35))


def test_split_is_the_same_every_run_and_changes_with_the_seed():
    labels = np.repeat(np.arange(2), 50).astype(np.int32)
    first = stratified_split(labels, ("a", "b"), 0.3, seed=7)[1]
    again = stratified_split(labels, ("a", "b"), 0.3, seed=7)[1]
    other = stratified_split(labels, ("a", "b"), 0.3, seed=8)[1]
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_a_class_keeps_its_split_when_another_class_is_added():
    two = np.repeat(np.arange(2), 30).astype(np.int32)
    three = np.repeat(np.arange(3), 30).astype(np.int32)  # "b" moves from label 1 to label 2
    val_two = stratified_split(two, ("a", "b"), 0.2, seed=1)[1]
    val_three = stratified_split(three, ("a", "a2", "b"), 0.2, seed=1)[1]
    assert (val_two[val_two >= 30] - 30).tolist() == (val_three[val_three >= 60] - 60).tolist()


def test_val_split_leaving_a_class_no_training_image_is_an_error():
    labels = np.array([0, 0, 0, 1], np.int32)
    with pytest.raises(DataError, match="class 'b' has 1 image.*no training image"):
        stratified_split(labels, ("a", "b"), 0.2, seed=0)


def test_load_splits_splits_train_dir_by_val_split(tmp_path):
    class_tree(tmp_path, {"a": 10, "b": 10})
    splits = load_splits(DataConfig(train_dir=str(tmp_path), val_split=0.2), seed=0)
    assert (len(splits.train), len(splits.val), splits.test) == (16, 4, None)
    assert not set(splits.train.paths) & set(splits.val.paths)


def test_validation_classes_must_match_training_classes(tmp_path):
    class_tree(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    class_tree(tmp_path / "val", {"a": 1, "b": 1, "d": 1})
    cfg = DataConfig(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "val"))
    with pytest.raises(DataError, match=r"data.val_dir: .*missing c; extra d"):
        load_splits(cfg, seed=0)


def test_test_classes_must_match_training_classes(tmp_path):
    class_tree(tmp_path / "train", {"a": 2, "b": 2})
    class_tree(tmp_path / "test", {"a": 1})
    cfg = DataConfig(train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"))
    with pytest.raises(DataError, match=r"data.test_dir: .*missing b"):
        load_splits(cfg, seed=0)


def test_training_needs_train_dir(tmp_path):
    with pytest.raises(DataError, match="data.train_dir is not set"):
        load_splits(DataConfig(), seed=0)


def test_evaluation_can_run_from_a_test_dir_alone(tmp_path):
    class_tree(tmp_path, {"a": 2, "b": 3})
    splits = load_splits(DataConfig(test_dir=str(tmp_path)), seed=0, need_train=False)
    assert (splits.train, splits.val, len(splits.test)) == (None, None, 5)
    assert splits.class_names == ("a", "b")
