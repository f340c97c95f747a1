"""What a dataset is once listed: the splits a run trains, validates and tests on.

Every input kind is a `Split`: the trainer and the pipeline ask it how many steps an epoch has
for a batching, for the dataset of its entries, for its fingerprint, and whether its sample
order depends on the worker count, and never which kind it is. Two kinds exist:

- `FolderSplit`: image paths and labels, read in any order; sample id = position in `paths`.
- `RecordSplit`: TFRecord files written by `distxfer data convert`, read front to back; sample
  ids are stored in the records.

Splits are plain Python and hold no TensorFlow objects, so they are built before the distributed
engine starts and can be handed to any process. Only `source` builds TensorFlow datasets: it
imports its kind's reader from `distxfer.data.sources` when called (see `distxfer`'s import rule).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from distxfer.data.layout import Batching, Reading, record_layout
from distxfer.data.plan import steps_per_epoch

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class BadFile:
    """An image the pipeline cannot read, and why, in words the user can act on."""

    path: str
    reason: str  # a sentence that follows the path, e.g. "is empty (0 bytes); ... remove it"

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


class Split(ABC):
    """One split of a dataset, whatever its input kind."""

    name: str
    # Whether step k of an epoch covers other samples when the worker count changes (at the same
    # global batch): then a resumed run can only continue mid-epoch with the same workers.
    order_depends_on_workers: ClassVar[bool]

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the split's content does."""

    @abstractmethod
    def class_counts(self, num_classes: int) -> np.ndarray:
        """Samples per class, int64 [num_classes]."""

    @abstractmethod
    def epoch_steps(
        self, batching: Batching, *, seed: int, epoch: int, shuffle: bool, training: bool = True
    ) -> int:
        """Global steps of one whole epoch, as `source` would return them."""

    @abstractmethod
    def source(self, batching: Batching, reading: Reading) -> tuple[tf.data.Dataset, int]:
        """This pipeline's entries of one epoch from `start_step` on, and the global steps they
        cover. An entry is {"id", "label", "weight"} plus the encoded file ("data") or the
        decoded image ("image"); padding entries have weight 0."""

    def files_to_scan(self) -> tuple[str, ...]:
        """Image files the bad-file scan should read before training (none by default)."""
        return ()

    def file_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Sizes and modification times (ns) of `files_to_scan`, as listed (for the scan cache)."""
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    def sample_name(self, sample_id: int) -> str:
        """Where sample `sample_id` comes from, for messages (its file, where it has one)."""
        return f"sample {sample_id} of the {self.name} split"

    def without(self, paths: Collection[str]) -> Split:
        """The split without the samples read from `paths` (as `files_to_scan` names them)."""
        return self


@dataclass(frozen=True, eq=False)
class FolderSplit(Split):
    """Images in class folders. Sample id = position in `paths` (listing order)."""

    order_depends_on_workers: ClassVar[bool] = False  # one global order, dealt to workers

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

    def epoch_steps(
        self, batching: Batching, *, seed: int, epoch: int, shuffle: bool, training: bool = True
    ) -> int:
        return steps_per_epoch(len(self), batching.global_batch)

    def source(self, batching: Batching, reading: Reading) -> tuple[tf.data.Dataset, int]:
        from distxfer.data.sources import folder_entries

        return folder_entries(self, batching, reading)

    def files_to_scan(self) -> tuple[str, ...]:
        return self.paths

    def file_stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sizes, self.mtimes

    def sample_name(self, sample_id: int) -> str:
        return self.paths[sample_id]

    def without(self, paths: Collection[str]) -> FolderSplit:
        if not paths:
            return self
        return self.subset([i for i, p in enumerate(self.paths) if p not in paths])


@dataclass(frozen=True, eq=False)
class RecordSplit(Split):
    """TFRecord files of one split; sample ids are stored in the records."""

    # Each worker reads whole files, so which samples a step covers depends on the workers.
    order_depends_on_workers: ClassVar[bool] = True

    name: str
    files: tuple[str, ...]
    counts: tuple[int, ...]  # records per file, from meta.json
    per_class: tuple[int, ...] = ()  # records per class, from meta.json

    def __len__(self) -> int:
        return sum(self.counts)

    def class_counts(self, num_classes: int) -> np.ndarray:
        counts = np.zeros(num_classes, np.int64)
        counts[: len(self.per_class)] = self.per_class
        return counts

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the record files' names and record counts (meta.json's view of the split)."""
        digest = hashlib.sha256("\0".join(self.files).encode("utf-8", "surrogateescape"))
        digest.update(np.asarray(self.counts, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def epoch_steps(
        self, batching: Batching, *, seed: int, epoch: int, shuffle: bool, training: bool = True
    ) -> int:
        layout = record_layout(
            self.counts,
            batching,
            seed=seed,
            epoch=epoch,
            shuffle=shuffle and training,
            training=training,
        )
        return layout.steps

    def source(self, batching: Batching, reading: Reading) -> tuple[tf.data.Dataset, int]:
        from distxfer.data.sources import record_entries

        return record_entries(self, batching, reading)


@dataclass(frozen=True)
class DataSplits:
    """Everything `load_splits` found: class names, the splits, and the bad files it dropped."""

    class_names: tuple[str, ...]
    train: Split | None
    val: Split | None = None
    test: Split | None = None
    skipped: tuple[BadFile, ...] = field(default=())
    class_weights: tuple[float, ...] | None = None  # loss weight per class (data.class_weight)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
