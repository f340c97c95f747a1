"""The training split as the loop walks it: run-wide epochs, their steps and their datasets.

Epochs are counted across phases (`index`), so every epoch of a run has its own data order and
augmentation draws; a phase's learning-rate schedule needs the step count of each of its epochs
before it starts (`phase_steps`), which for record splits can differ from epoch to epoch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from distxfer.config import Config
from distxfer.data import Batching, Split
from distxfer.data.pipeline import train_dataset
from distxfer.train.state import DataOrder, Position


class Epochs:
    """One run's training epochs over one split, for this process's pipeline."""

    def __init__(
        self, config: Config, split: Split, batching: Batching, cache_dir: str | None = None
    ) -> None:
        self.config = config
        self.split = split
        self.batching = batching
        self.cache_dir = cache_dir

    def index(self, phase: int, epoch: int) -> int:
        """The run-wide index of epoch `epoch` of phase `phase`."""
        return sum(p.epochs for p in self.config.phases[:phase]) + epoch

    def steps(self, index: int) -> int:
        """Global steps of the run-wide epoch `index`."""
        seed, shuffle = self.config.seed, self.config.data.shuffle
        return self.split.epoch_steps(self.batching, seed=seed, epoch=index, shuffle=shuffle)

    def phase_steps(self, phase: int) -> list[int]:
        """Global steps of each epoch of a phase."""
        return [self.steps(self.index(phase, e)) for e in range(self.config.phases[phase].epochs)]

    def dataset(self, index: int, start_step: int = 0) -> tuple[tf.data.Dataset, int]:
        """This pipeline's batches of epoch `index` from `start_step` on, and their global steps."""
        return train_dataset(
            self.split,
            self.batching,
            cfg=self.config.data,
            seed=self.config.seed,
            epoch=index,
            start_step=start_step,
            cache_dir=self.cache_dir,
        )

    def preview(self, position: Position, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` training inputs of the epoch at `position`, augmented, as the model
        gets them (images, labels)."""
        dataset, _ = train_dataset(
            self.split,
            Batching(count, 1, 1),
            cfg=self.config.data,
            seed=self.config.seed,
            epoch=self.index(position.phase, position.epoch),
            cache_dir=self.cache_dir,
        )
        batch = next(iter(dataset.take(1)))
        return batch["image"].numpy(), batch["label"].numpy()

    def order(self) -> DataOrder:
        """What fixes the samples of each step, as a checkpoint records it."""
        return DataOrder(
            seed=self.config.seed,
            global_batch=self.batching.global_batch,
            num_pipelines=self.batching.num_pipelines,
            num_train=len(self.split),
            train_fingerprint=self.split.fingerprint,
        )
