"""A split of precomputed features: what a frozen backbone made of each image, one row each.

While the backbone is frozen (phase 1 of transfer learning) and nothing changes an image from
epoch to epoch, the backbone's output for a sample is the same every epoch, so it is computed
once (`distxfer.train.featurecache`) and the head trains on it. As an input kind it is one more
`Split`: the same epoch plan as a folder split (one global order by seed and epoch, dealt to
the workers, padded with weight-0 entries), so a phase on features takes its steps over the same
samples, in the same order, with the same weights as on images. Entries carry the feature row
as "image"; the pipeline batches it like a cached image. Plain numpy until `source`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from distxfer.data.layout import Batching, Reading
from distxfer.data.plan import steps_per_epoch
from distxfer.data.splits import Split

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True, eq=False)
class FeatureSplit(Split):
    """Feature rows of one split; sample id = row = the sample id of the images' split."""

    order_depends_on_workers: ClassVar[bool] = False  # one global order, dealt to workers

    name: str
    features: np.ndarray  # float32 [N, D]
    labels: np.ndarray  # int32 [N]
    key: str  # what the features were computed from (data, backbone, weights, image size)

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"features|{self.key}".encode()).hexdigest()

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def epoch_steps(
        self, batching: Batching, *, seed: int, epoch: int, shuffle: bool, training: bool = True
    ) -> int:
        return steps_per_epoch(len(self), batching.global_batch)

    def source(self, batching: Batching, reading: Reading) -> tuple[tf.data.Dataset, int]:
        from distxfer.data.sources import feature_entries

        return feature_entries(self, batching, reading)
