"""What a dataset is once listed: the splits a run trains, validates and tests on.

A split is either a `FolderSplit` (image paths and labels, read in any order) or a
`RecordSplit` (TFRecord files written by `distxfer data convert`, read front to back).
Both are plain Python and hold no TensorFlow objects, so they are built before the
distributed engine starts and can be handed to any process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class BadFile:
    """An image the pipeline cannot read, and why, in words the user can act on."""

    path: str
    reason: str  # a sentence that follows the path, e.g. "is empty (0 bytes); ... remove it"

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """Images in class folders. Sample id = position in `paths` (listing order)."""

    name: str
    paths: tuple[str, ...]
    labels: np.ndarray  # int32, class index of each path
    sizes: np.ndarray  # int64 bytes, as listed
    mtimes: np.ndarray  # int64 modification time in ns, as listed

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray | list[int], name: str | None = None) -> FolderSplit:
        """The samples at `indices` (in that order), renumbered from 0."""
        idx = np.asarray(indices, dtype=np.int64)
        return FolderSplit(
            name=name or self.name,
            paths=tuple(self.paths[i] for i in idx),
            labels=self.labels[idx],
            sizes=self.sizes[idx],
            mtimes=self.mtimes[idx],
        )

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the paths, labels, sizes and modification times: changes when any file does."""
        digest = hashlib.sha256()
        digest.update("\0".join(self.paths).encode("utf-8", "surrogateescape"))
        for array in (self.labels, self.sizes, self.mtimes):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class RecordSplit:
    """TFRecord files of one split; sample ids are stored in the records."""

    name: str
    files: tuple[str, ...]
    counts: tuple[int, ...]  # records per file, from meta.json

    def __len__(self) -> int:
        return sum(self.counts)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the record files' names and record counts (meta.json's view of the split)."""
        digest = hashlib.sha256("\0".join(self.files).encode("utf-8", "surrogateescape"))
        digest.update(np.asarray(self.counts, dtype=np.int64).tobytes())
        return digest.hexdigest()


Split = FolderSplit | RecordSplit


@dataclass(frozen=True)
class DataSplits:
    """Everything `load_splits` found: class names, the splits, and the bad files it dropped."""

    class_names: tuple[str, ...]
    train: Split | None
    val: Split | None = None
    test: Split | None = None
    skipped: tuple[BadFile, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
