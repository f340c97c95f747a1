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
from distxfer.data.storagemap import map_by_storage
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
    labels, sizes, mtimes = [], [], []
    empty = []
    folders = [os.path.join(root, name) for name in class_names]
    listed = map_by_storage(
        lambda folder: _image_files(folder, follow_links),
        folders,
        threads=min(16, 4 * (os.cpu_count() or 1)),
        name="distxfer-list",
    )
    for label, (name, (found, found_sizes, found_mtimes)) in enumerate(
        zip(class_names, listed, strict=True)
    ):
        if not found:
            empty.append(name)
        paths.extend(found)
        labels.append(np.full(len(found), label, np.int32))
        sizes.append(found_sizes)
        mtimes.append(found_mtimes)
    if empty and not allow_empty:
        shown = ", ".join(repr(n) for n in empty)
        raise DataError(
            f"{key}: class folder(s) {shown} in {root} hold no images "
            f"({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    labels_array = np.concatenate(labels) if labels else np.zeros(0, np.int32)
    split = FolderSplit(
        "all", tuple(paths), labels_array, np.concatenate(sizes), np.concatenate(mtimes)
    )
    return class_names, split


def _image_files(class_dir: str, follow_links: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image files below `class_dir` (directories in sorted path order, files sorted in each),
    with their sizes and modification times in ns (-1 and 0 for a file that cannot be stat'ed:
    the scan reports it). One `scandir` pass: no path joins or stats beyond one per file."""
    seen: set[str] = set()
    found: list[tuple[str, list[os.DirEntry]]] = []
    pending = [class_dir]
    while pending:
        folder = pending.pop()
        if follow_links:  # a link back up the tree would otherwise loop forever
            real = os.path.realpath(folder)
            if real in seen:
                continue
            seen.add(real)
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as error:
            raise DataError(
                f"cannot read folder {error.filename or folder}: {error.strerror}; fix its "
                "permissions or remove it"
            ) from None
        files = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                if follow_links or not entry.is_symlink():
                    pending.append(entry.path)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(entry)
        files.sort(key=lambda e: e.name)
        found.append((folder, files))
    found.sort(key=lambda item: item[0])
    entries = [e for _, files in found for e in files]
    sizes = np.full(len(entries), -1, np.int64)
    mtimes = np.zeros(len(entries), np.int64)
    for i, entry in enumerate(entries):
        try:
            st = entry.stat()
        except OSError:
            continue
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return [e.path for e in entries], sizes, mtimes


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def stratified_split(
    labels: np.ndarray, class_names: tuple[str, ...], val_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation samples: `val_split` of every class held out.

    Each class holds out round(n * val_split) of its n images, at least one, chosen by a
    permutation seeded by (seed, class name), so a class's split does not change when other
    classes are added. Both index arrays are sorted (listing order).
    """
    val: list[np.ndarray] = []
    order = np.argsort(labels, kind="stable")  # each class's members in listing order
    counts = np.bincount(labels, minlength=len(class_names))
    ends = np.cumsum(counts)
    for label, name in enumerate(class_names):
        members = order[ends[label] - counts[label] : ends[label]]
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
