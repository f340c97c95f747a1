"""Splits -> tf.data pipelines of per-replica batches, one pipeline per worker process.

Every batch is `{"image": uint8 [B, H, W, C], "label": int32 [B], "weight": float32 [B],
"id": int64 [B]}`. Images stay uint8 up to the model, which casts and preprocesses them
itself (4x less host-to-device traffic than float32). `weight` is 0 for padding entries, so
every pipeline yields exactly `steps * replicas_per_pipeline` full batches and sums over
workers stay exact; `id` is the sample's index in its split.

Folder splits follow `distxfer.data.plan.plan_epoch`: which sample sits where is fixed by
(seed, epoch) alone, so any worker count at the same global batch takes the same steps and a
resumed run skips exactly the steps already taken. Record splits are read file by file
(`plan_file_shards`) through a seeded shuffle buffer and padded with weight-0 records.
Everything after the plan is graph ops: no Python runs per sample or per step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from distxfer.config.schema import DataConfig
from distxfer.data.augment import (
    apply_augmentation,
    random_resized_crop,
    sample_seed,
    sample_transform,
)
from distxfer.data.cache import cached_images
from distxfer.data.decode import decode_image, resize
from distxfer.data.layout import Batching, record_layout
from distxfer.data.plan import plan_epoch
from distxfer.data.splits import FolderSplit, RecordSplit, Split
from distxfer.data.tfrecords import parse_record, read_records

log = logging.getLogger("distxfer.data")

SHUFFLE_BUFFER = 4096  # records; a record split's files are also shuffled each epoch
AUTOTUNE = tf.data.AUTOTUNE


def train_dataset(
    split: Split,
    *,
    cfg: DataConfig,
    image_size: tuple[int, int],
    channels: int,
    per_replica_batch: int,
    replicas_per_pipeline: int,
    num_pipelines: int,
    pipeline: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    cache_dir: str | None = None,
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's shuffled, augmented batches of one epoch from `start_step` on.

    Returns the dataset and the number of global steps it covers (the same on every
    pipeline); the dataset yields exactly steps * replicas_per_pipeline batches.
    """
    batching = Batching(per_replica_batch, replicas_per_pipeline, num_pipelines, pipeline)
    return _dataset(
        split,
        cfg,
        tuple(image_size),
        channels,
        batching,
        seed=seed,
        epoch=epoch,
        start_step=start_step,
        training=True,
        cache_dir=cache_dir,
    )


def eval_dataset(
    split: Split,
    *,
    cfg: DataConfig,
    image_size: tuple[int, int],
    channels: int,
    per_replica_batch: int,
    replicas_per_pipeline: int,
    num_pipelines: int,
    pipeline: int,
    cache_dir: str | None = None,
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's share of `split` in order, unaugmented, with weights 0 (padding) or 1.

    Summed over all pipelines, the weight-1 entries are every sample exactly once.
    """
    batching = Batching(per_replica_batch, replicas_per_pipeline, num_pipelines, pipeline)
    return _dataset(
        split,
        cfg,
        tuple(image_size),
        channels,
        batching,
        seed=0,
        epoch=0,
        start_step=0,
        training=False,
        cache_dir=cache_dir,
    )


def _dataset(
    split: Split,
    cfg: DataConfig,
    image_size: tuple[int, int],
    channels: int,
    batching: Batching,
    *,
    seed: int,
    epoch: int,
    start_step: int,
    training: bool,
    cache_dir: str | None,
) -> tuple[tf.data.Dataset, int]:
    shuffle = cfg.shuffle and training
    if isinstance(split, FolderSplit):
        plan = plan_epoch(
            len(split),
            batching.global_batch,
            seed=seed,
            epoch=epoch,
            shuffle=shuffle,
            training=training,
            pipeline=batching.pipeline,
            num_pipelines=batching.num_pipelines,
            start_step=start_step,
        )
        ds = tf.data.Dataset.from_tensor_slices({"id": plan.indices, "weight": plan.weights})
        cached = (
            cached_images(split, image_size, channels, cfg.cache, cache_dir)
            if cfg.cache != "none"
            else None
        )
        ds = ds.map(_folder_fields(split, cached), num_parallel_calls=AUTOTUNE)
        steps = plan.steps
    else:
        if cfg.cache != "none":
            _warn_once(
                f"data.cache={cfg.cache} is ignored for TFRecord input: records are read "
                "in file order, not by sample"
            )
        ds, steps = _record_source(
            split,
            batching,
            seed=seed,
            epoch=epoch,
            shuffle=shuffle,
            training=training,
            start_step=start_step,
        )
    augmenting = training and cfg.augment.enabled
    ds = ds.map(
        _loader(cfg, image_size, channels, seed, epoch, augmenting), num_parallel_calls=AUTOTUNE
    )
    ds = ds.batch(batching.per_replica_batch, drop_remainder=True)
    ds = ds.map(_finisher(cfg, augmenting), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(_options()), steps


def _folder_fields(split: FolderSplit, cached: tf.Tensor | None) -> Callable:
    """id -> label, and the file path or the cached image."""
    labels = tf.constant(split.labels, tf.int32)
    paths = None if cached is not None else tf.constant(list(split.paths))

    def fields(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        e = dict(e, label=tf.gather(labels, e["id"]))
        if cached is not None:
            e["image"] = tf.gather(cached, e["id"])
        else:
            e["data"] = tf.io.read_file(tf.gather(paths, e["id"]))
        return e

    return fields


def _loader(
    cfg: DataConfig,
    image_size: tuple[int, int],
    channels: int,
    seed: int,
    epoch: int,
    augmenting: bool,
) -> Callable:
    """Decode and size one sample; when augmenting, also draw its random transform."""
    aug = cfg.augment

    def load(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = e["image"] if "image" in e else decode_image(e.pop("data"), channels)
        sample = sample_seed(seed, epoch, e["id"]) if augmenting else None
        if augmenting and aug.random_resized_crop:
            image = random_resized_crop(image, sample, aug, image_size)
        elif "image" not in e:
            image = resize(image, image_size)
        out = {"image": image, "label": e["label"], "weight": e["weight"], "id": e["id"]}
        if augmenting:
            out["transform"], out["brightness"] = sample_transform(sample, aug, image_size)
        return out

    return load


def _finisher(cfg: DataConfig, augmenting: bool) -> Callable:
    """Apply the batch's transforms and keep exactly the output contract's keys."""

    def finish(b: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = b["image"]
        if augmenting:
            image = apply_augmentation(image, b["transform"], b["brightness"], cfg.augment)
        return {"image": image, "label": b["label"], "weight": b["weight"], "id": b["id"]}

    return finish


def _record_source(
    split: RecordSplit,
    batching: Batching,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    training: bool,
    start_step: int,
) -> tuple[tf.data.Dataset, int]:
    """Records of this pipeline, padded with weight-0 records to whole steps."""
    layout = record_layout(
        split.counts, batching, seed=seed, epoch=epoch, shuffle=shuffle, training=training
    )
    real = read_records([split.files[i] for i in layout.files])
    if layout.by_record:
        real = real.shard(batching.num_pipelines, batching.pipeline)
    if shuffle:
        state = np.random.SeedSequence([seed, epoch, batching.pipeline]).generate_state(1)
        real = real.shuffle(
            max(1, min(layout.mine, SHUFFLE_BUFFER)),
            seed=int(state[0]),
            reshuffle_each_iteration=False,
        )
    padding = read_records(split.files).repeat()
    per_pipeline = batching.per_pipeline
    start = min(start_step, layout.steps)
    ds = real.concatenate(padding).take(layout.steps * per_pipeline).enumerate()
    ds = ds.skip(start * per_pipeline)  # before parsing and decoding: skipping is cheap
    weights = tf.constant(layout.step_weights)

    def fields(position: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        e = parse_record(record)
        e["weight"] = tf.where(
            position < layout.mine, tf.gather(weights, position // per_pipeline), 0.0
        )
        return e

    return ds.map(fields, num_parallel_calls=AUTOTUNE), layout.steps - start


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # Each worker already reads only its own share; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return options
