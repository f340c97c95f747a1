"""How one epoch of a split is laid out over the input pipelines: shares, steps and weights.

Plain Python and numpy on top of `distxfer.data.plan`, so the trainer can know an epoch's
step count (for learning-rate schedules) before TensorFlow starts. For a folder split an
epoch has ceil(N / global batch) steps. A record split is read file by file, so its step
count is set by the pipeline with the most records and can change from epoch to epoch as
the files are reshuffled; `Split.epoch_steps` gives it for any epoch.

With `data.global_batch`, a global step covers that many samples whatever the hardware: each
replica accumulates gradients over `accumulation` micro-batches of `data.batch_size` before the
one optimizer update, so N = batch_size x replicas x accumulation and step k covers the same
samples on 1 worker accumulating 2 micro-batches as on 2 workers accumulating 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distxfer.config.schema import DataConfig
from distxfer.data.plan import EpochPlan, plan_epoch, plan_file_shards
from distxfer.errors import ConfigError, DataError


@dataclass(frozen=True)
class Batching:
    """Batch sizes and this process's place among the input pipelines."""

    per_replica_batch: int  # one micro-batch of one replica
    replicas_per_pipeline: int
    num_pipelines: int
    pipeline: int = 0
    accumulation: int = 1  # micro-batches each replica adds up before one optimizer step

    @property
    def per_pipeline(self) -> int:
        """Samples one pipeline feeds per global step."""
        return self.per_replica_batch * self.replicas_per_pipeline * self.accumulation

    @property
    def global_batch(self) -> int:
        """Samples per global (optimizer) step."""
        return self.per_pipeline * self.num_pipelines


def make_batching(
    cfg: DataConfig, replicas_per_pipeline: int, num_pipelines: int, pipeline: int = 0
) -> Batching:
    """This process's batching for `cfg`: the accumulation that makes `data.global_batch` (when
    set) out of `data.batch_size` on this many replicas."""
    replicas = replicas_per_pipeline * num_pipelines
    per_step = cfg.batch_size * replicas
    accumulation = 1
    if cfg.global_batch is not None:
        if cfg.global_batch % per_step:
            raise ConfigError(
                f"data.global_batch: {cfg.global_batch} is not a multiple of data.batch_size x"
                f" replicas = {cfg.batch_size} x {replicas} = {per_step}; set it to a multiple of"
                f" {per_step}, or change data.batch_size"
            )
        accumulation = cfg.global_batch // per_step
    return Batching(cfg.batch_size, replicas_per_pipeline, num_pipelines, pipeline, accumulation)


@dataclass(frozen=True)
class Reading:
    """Which epoch of a split a pipeline reads, and how: what `Split.source` is asked for."""

    cfg: DataConfig
    seed: int = 0
    epoch: int = 0
    training: bool = False  # training epochs are shuffled (data.shuffle) and weighted
    start_step: int = 0
    cache_dir: str | None = None

    @property
    def shuffle(self) -> bool:
        return self.cfg.shuffle and self.training


def sample_plan(num_samples: int, batching: Batching, reading: Reading) -> EpochPlan:
    """This pipeline's share of a reading of a split whose samples can be read in any order."""
    return plan_epoch(
        num_samples,
        batching.global_batch,
        seed=reading.seed,
        epoch=reading.epoch,
        shuffle=reading.shuffle,
        training=reading.training,
        pipeline=batching.pipeline,
        num_pipelines=batching.num_pipelines,
        start_step=reading.start_step,
    )


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
