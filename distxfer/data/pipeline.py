"""Splits -> tf.data pipelines of per-replica batches, one pipeline per worker process.

Every batch is `{"image": uint8 [B, H, W, C], "label": int32 [B], "weight": float32 [B],
"id": int64 [B]}`. Images stay uint8 up to the model, which casts and preprocesses them
itself (4x less host-to-device traffic than float32). `weight` is 0 for padding entries, so
every pipeline yields exactly `steps * replicas_per_pipeline * accumulation` full batches and
sums over workers stay exact; `id` is the sample's index in its split.

The split supplies its entries (`Split.source`, one reader per input kind, in
`distxfer.data.sources`); this module decodes, sizes, augments and batches them alike for every
kind. Everything after the plan is graph ops: no Python runs per sample or per step.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from distxfer.config.schema import DataConfig
from distxfer.data.augment import (
    apply_augmentation,
    random_resized_crop,
    sample_seed,
    sample_transform,
)
from distxfer.data.decode import decode_image, resize
from distxfer.data.layout import Batching, Reading
from distxfer.data.splits import Split

AUTOTUNE = tf.data.AUTOTUNE


def train_dataset(
    split: Split,
    batching: Batching,
    *,
    cfg: DataConfig,
    seed: int,
    epoch: int,
    start_step: int = 0,
    cache_dir: str | None = None,
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's shuffled, augmented batches of one epoch from `start_step` on.

    Returns the dataset and the number of global steps it covers (the same on every
    pipeline); the dataset yields exactly steps * replicas_per_pipeline * accumulation batches.
    """
    reading = Reading(cfg, seed, epoch, training=True, start_step=start_step, cache_dir=cache_dir)
    entries, steps = split.source(batching, reading)
    augmenting = cfg.augment.enabled
    return _batches(entries, batching, cfg, seed=seed, epoch=epoch, augmenting=augmenting), steps


def eval_dataset(
    split: Split, batching: Batching, *, cfg: DataConfig, cache_dir: str | None = None
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's share of `split` in order, unaugmented, with weights 0 (padding) or 1.

    Summed over all pipelines, the weight-1 entries are every sample exactly once.
    """
    entries, steps = split.source(batching, Reading(cfg, cache_dir=cache_dir))
    return _batches(entries, batching, cfg, seed=0, epoch=0, augmenting=False), steps


def _batches(
    entries: tf.data.Dataset,
    batching: Batching,
    cfg: DataConfig,
    *,
    seed: int,
    epoch: int,
    augmenting: bool,
) -> tf.data.Dataset:
    ds = entries.map(_loader(cfg, seed, epoch, augmenting), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batching.per_replica_batch, drop_remainder=True)
    ds = ds.map(_finisher(cfg, augmenting), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def _loader(cfg: DataConfig, seed: int, epoch: int, augmenting: bool) -> Callable:
    """Decode and size one sample; when augmenting, also draw its random transform."""
    aug, image_size, channels = cfg.augment, cfg.image_hw, cfg.channels

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


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # Each worker already reads only its own share; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return options
