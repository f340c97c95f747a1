"""Find the images of a class-folder dataset and split them, the way Keras does.

Classes are the subfolder names in plain `sorted()` order and each class's files are found
recursively, directories in sorted path order and files sorted within each, as
`keras.utils.image_dataset_from_directory` lists them. Hidden folders and files (names starting
with ".", such as `.ipynb_checkpoints` or macOS `._photo.jpg`) are not data and are left out.
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np

from distxfer.data.splits import FolderSplit
from distxfer.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_class_folder(
    root: str, *, follow_links: bool = False, key: str = "data.train_dir", allow_empty: bool = False
) -> tuple[tuple[str, ...], FolderSplit]:
    """The class names under `root` and every image below them, as one split named "all".

    `key` is the config key that named `root`, so errors say which setting to fix. An empty
    class folder is an error unless `allow_empty` (for reports).
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.exists(root):
        raise DataError(
            f"{key}: {root} does not exist; point it at a folder with one subfolder "
            "of images per class"
        )
    if not os.path.isdir(root):
        raise DataError(
            f"{key}: {root} is a file, not a folder; point it at a folder with one "
            "subfolder of images per class"
        )
    class_names = tuple(
        sorted(
            entry.name
            for entry in os.scandir(root)
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True)
        )
    )
    if not class_names:
        raise DataError(
            f"{key}: {root} has no class folders; put each class's images in its own "
            f"subfolder, e.g. {os.path.join(root, 'cats', '0001.jpg')}"
        )
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(class_names):
        found = _image_files(os.path.join(root, name), follow_links)
        if not found:
            empty.append(name)
        paths.extend(found)
        labels.extend([label] * len(found))
    if empty and not allow_empty:
        shown = ", ".join(repr(n) for n in empty)
        raise DataError(
            f"{key}: class folder(s) {shown} in {root} hold no images "
            f"({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    sizes, mtimes = _stat_all(paths)
    split = FolderSplit("all", tuple(paths), np.asarray(labels, np.int32), sizes, mtimes)
    return class_names, split


def _image_files(class_dir: str, follow_links: bool) -> list[str]:
    """Image files below `class_dir`: directories in sorted path order, files sorted in each."""
    seen: set[str] = set()
    found: list[tuple[str, list[str]]] = []

    def unreadable(error: OSError) -> None:
        raise DataError(
            f"cannot read folder {error.filename}: {error.strerror}; fix its "
            "permissions or remove it"
        )

    for dirpath, dirnames, filenames in os.walk(
        class_dir, onerror=unreadable, followlinks=follow_links
    ):
        if follow_links:  # a link back up the tree would otherwise loop forever
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files = [
            f for f in filenames if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
        found.append((dirpath, sorted(files)))
    found.sort(key=lambda item: item[0])
    return [os.path.join(dirpath, f) for dirpath, files in found for f in files]


def _stat_all(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and modification times; -1 for a file that cannot be stat'ed (the scan reports it)."""
    sizes = np.full(len(paths), -1, np.int64)
    mtimes = np.zeros(len(paths), np.int64)
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def stratified_split(
    labels: np.ndarray, class_names: tuple[str, ...], val_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation samples: `val_split` of every class held out.

    Each class holds out round(n * val_split) of its n images, at least one, chosen by a
    permutation seeded by (seed, class name), so a class's split does not change when other
    classes are added. Both index arrays are sorted (listing order).
    """
    val: list[np.ndarray] = []
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        n = len(members)
        n_val = max(1, math.floor(n * val_split + 0.5))
        if n_val >= n:
            raise DataError(
                f"class {name!r} has {n} image(s), so data.val_split={val_split} leaves it no "
                "training image; add images to it, lower data.val_split, or give a separate "
                "data.val_dir"
            )
        rng = class_rng(seed, name)
        val.append(members[rng.permutation(n)[:n_val]])
    val_idx = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def stratified_folds(
    labels: np.ndarray, class_names: tuple[str, ...], folds: int, seed: int
) -> np.ndarray:
    """The fold (0 to `folds` - 1) of every sample: each class dealt out over the folds.

    A class's images, in the order of the same seeded permutation `stratified_split` uses, go
    to the folds in turn, so every fold holds floor(n / folds) or one more of a class's n
    images; each class starts where the previous one stopped, which keeps the folds' sizes
    within one image of each other too. The folds follow from the file listing and the seed
    alone, never from the number of workers.
    """
    fold_of = np.empty(len(labels), np.int64)
    start = 0
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        n = len(members)
        if n < folds:
            raise DataError(
                f"class {name!r} has {n} image(s), fewer than data.folds={folds}, so some fold "
                f"would not validate it; use at most {n} folds or add images to the class"
            )
        order = members[class_rng(seed, name).permutation(n)]
        fold_of[order] = (start + np.arange(n)) % folds
        start = (start + n) % folds
    return fold_of


def class_rng(seed: int, name: str) -> np.random.Generator:
    """A generator seeded by (seed, class name): a class's draw ignores the other classes."""
    return np.random.Generator(
        np.random.PCG64(
            np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8", "surrogateescape"))])
        )
    )


def check_same_classes(
    expected: tuple[str, ...],
    found: tuple[str, ...],
    key: str,
    root: str,
    *,
    expected_from: str = "data.train_dir",
) -> None:
    """Raise unless `found` (the class folders of `root`, named by config key or flag `key`)
    names exactly the `expected` classes (those of `expected_from`)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"extra {', '.join(extra)}")
    raise DataError(
        f"{key}: {root} has different class folders from {expected_from} "
        f"({'; '.join(parts)}); every split needs the same class folders"
    )
