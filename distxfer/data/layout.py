"""How one epoch of a split is laid out over the input pipelines: shares, steps and weights.

Plain Python and numpy on top of `distxfer.data.plan`, so the trainer can know an epoch's
step count (for learning-rate schedules) before TensorFlow starts. For a folder split an
epoch has ceil(N / global batch) steps. A record split is read file by file, so its step
count is set by the pipeline with the most records and can change from epoch to epoch as
the files are reshuffled; `epoch_steps` gives it for any epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distxfer.data.plan import plan_file_shards, steps_per_epoch
from distxfer.data.splits import FolderSplit, Split
from distxfer.errors import DataError


@dataclass(frozen=True)
class Batching:
    """Batch sizes and this process's place among the input pipelines."""

    per_replica_batch: int
    replicas_per_pipeline: int
    num_pipelines: int
    pipeline: int = 0

    @property
    def per_pipeline(self) -> int:
        return self.per_replica_batch * self.replicas_per_pipeline

    @property
    def global_batch(self) -> int:
        return self.per_pipeline * self.num_pipelines


def epoch_steps(
    split: Split,
    *,
    per_replica_batch: int,
    replicas_per_pipeline: int,
    num_pipelines: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    training: bool = True,
) -> int:
    """Global steps of one whole epoch, as `train_dataset`/`eval_dataset` would return them.

    `shuffle` is `data.shuffle` (it only matters for record splits in training).
    """
    batching = Batching(per_replica_batch, replicas_per_pipeline, num_pipelines)
    if isinstance(split, FolderSplit):
        return steps_per_epoch(len(split), batching.global_batch)
    return record_layout(
        split.counts,
        batching,
        seed=seed,
        epoch=epoch,
        shuffle=shuffle and training,
        training=training,
    ).steps


@dataclass(frozen=True)
class RecordLayout:
    """One pipeline's share of a record split in one epoch."""

    files: list[int]  # which files this pipeline reads, in order
    by_record: bool  # too few files: read them all and keep every num_pipelines-th record
    mine: int  # real records this pipeline reads
    steps: int  # global steps of the epoch (the same on every pipeline)
    step_weights: np.ndarray  # float32 weight of a real record at each step


def record_layout(
    counts: tuple[int, ...],
    batching: Batching,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    training: bool,
) -> RecordLayout:
    """Files, counts and per-step weights, computed alike on every pipeline."""
    n_pipes, per_pipeline = batching.num_pipelines, batching.per_pipeline
    if len(counts) >= n_pipes:
        shares = [
            plan_file_shards(
                list(counts),
                per_pipeline,
                seed=seed,
                epoch=epoch,
                shuffle=shuffle,
                pipeline=q,
                num_pipelines=n_pipes,
            )
            for q in range(n_pipes)
        ]
        files, steps = shares[batching.pipeline]
        per = [sum(counts[f] for f in fs) for fs, _ in shares]
        by_record = False
    elif training:
        raise DataError(
            f"the training records are in {len(counts)} files, too few for "
            f"{n_pipes} workers to read their own; re-convert with --shards "
            f"{n_pipes} or more"
        )
    else:
        total = sum(counts)
        files, by_record = list(range(len(counts))), True
        per = [len(range(q, total, n_pipes)) for q in range(n_pipes)]
        steps = math.ceil(max(per) / per_pipeline)
    weights = np.ones(steps, np.float32)
    if training:  # as plan_epoch: a partial step's weights make its loss the mean of its reals
        k = np.arange(steps)
        real = sum(np.clip(c - k * per_pipeline, 0, per_pipeline) for c in per)
        weights = (batching.global_batch / real).astype(np.float32)
    return RecordLayout(files, by_record, per[batching.pipeline], steps, weights)
