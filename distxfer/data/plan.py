"""Which sample goes to which replica at which step: a pure function of seed, epoch and shard.

An epoch's order is one global permutation of the sample indices (seeded by seed and epoch),
padded to a whole number of global batches and dealt round-robin to the input pipelines
(one per worker process). A pipeline batches its share by the per-replica batch size, and a
strategy hands consecutive batches to its local replicas, so global step k always covers
positions [k*G, (k+1)*G) of the global order, whatever the number of workers (with gradient
accumulation, G counts every micro-batch of the step: a pipeline's share of a step is its
replicas' micro-batches, one after another). That is what makes 1 worker and 2 workers at the
same global batch G take identical steps, lets a resumed run skip exactly the steps already
taken, and gives every worker the same number of steps.

Padding entries repeat a real sample so shapes stay static, with weight 0. Training weights of
the last, partial step are scaled by G / real_count, so the loss (sum of weight * loss / G) is the
mean over the real samples, as Keras `fit` computes it for a short last batch. Evaluation
weights are 0 or 1, so summed counts are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpochPlan:
    """One input pipeline's share of one epoch, from a starting step on."""

    indices: np.ndarray  # int64 sample indices, in the order this pipeline reads them
    weights: np.ndarray  # float32 per-entry loss weight; 0 marks padding
    steps: int  # global steps this plan covers (the same on every pipeline)

    @property
    def num_real(self) -> int:
        return int(np.count_nonzero(self.weights))


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The global order of sample indices for one epoch: a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return rng.permutation(num_samples).astype(np.int64)


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    return math.ceil(num_samples / global_batch) if num_samples else 0


def plan_epoch(
    num_samples: int,
    global_batch: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    training: bool,
    pipeline: int = 0,
    num_pipelines: int = 1,
    start_step: int = 0,
) -> EpochPlan:
    """This pipeline's entries of the epoch, from `start_step` to the end.

    `global_batch` must be a multiple of `num_pipelines` (it is per-replica batch x replicas).
    """
    if num_samples < 1:
        raise ValueError("cannot plan an epoch over zero samples")
    if global_batch % num_pipelines:
        raise ValueError(
            f"global batch {global_batch} is not a multiple of {num_pipelines} pipelines"
        )
    if not 0 <= pipeline < num_pipelines:
        raise ValueError(f"pipeline {pipeline} is outside 0..{num_pipelines - 1}")
    order = epoch_order(num_samples, seed, epoch, shuffle)
    steps = steps_per_epoch(num_samples, global_batch)
    padded = steps * global_batch
    indices = np.concatenate([order, np.resize(order, padded - num_samples)])
    weights = np.zeros(padded, dtype=np.float32)
    weights[:num_samples] = 1.0
    last_real = num_samples - (steps - 1) * global_batch
    if training and last_real < global_batch:
        weights[(steps - 1) * global_batch : num_samples] = global_batch / last_real
    start = min(start_step, steps) * global_batch
    return EpochPlan(
        indices=indices[start + pipeline :: num_pipelines],
        weights=weights[start + pipeline :: num_pipelines],
        steps=steps - min(start_step, steps),
    )


def plan_file_shards(
    file_counts: list[int],
    per_pipeline_batch: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    pipeline: int,
    num_pipelines: int,
) -> tuple[list[int], int]:
    """For record files read sequentially: which files this pipeline reads, and the step count.

    Files are permuted by (seed, epoch) and dealt round-robin. Every pipeline runs the step count
    of the fullest one; the others pad with weight-0 entries (see `distxfer.data.pipeline`).
    """
    if len(file_counts) < num_pipelines:
        raise ValueError(f"{len(file_counts)} record files cannot feed {num_pipelines} workers")
    order = epoch_order(len(file_counts), seed, epoch, shuffle)
    mine = [int(i) for i in order[pipeline::num_pipelines]]
    per_pipeline = [
        sum(file_counts[int(i)] for i in order[p::num_pipelines]) for p in range(num_pipelines)
    ]
    steps = math.ceil(max(per_pipeline) / per_pipeline_batch)
    return mine, steps
