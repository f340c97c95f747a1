"""Splits -> tf.data pipelines of per-replica batches, one pipeline per worker process.

Every batch is `{"image": uint8 [B, H, W, C], "label": int32 [B], "weight": float32 [B],
"id": int64 [B]}`. Images stay uint8 up to the model, which casts and preprocesses them
itself (4x less host-to-device traffic than float32). `weight` is 0 for padding entries, so
every pipeline yields exactly `steps * replicas_per_pipeline * accumulation` full batches and
sums over workers stay exact; `id` is the sample's index in its split.

The split supplies its entries (`Split.source`, one reader per input kind, in
`distxfer.data.sources`); this module decodes, sizes, augments and batches them alike for every
kind. Everything after the plan is graph ops: no Python runs per sample or per step.
The functions mapped over samples (here, in `failures` and in `sources`) are plain graph code,
so AutoGraph is told not to convert them: converting them cost about 0.3 s per pipeline, built
every epoch (BENCHMARKS.md, "The demo").
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from distxfer.config.schema import DataConfig
from distxfer.data.augment import (
    apply_augmentation,
    augment_parameters,
    random_resized_crop,
    sample_seed,
    sample_transform,
)
from distxfer.data.decode import decode_image, decode_resized
from distxfer.data.failures import load_batches
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
    ds = _batches(
        entries, batching, cfg, seed=seed, epoch=epoch, augmenting=augmenting, split=split
    )
    return ds, steps


def eval_dataset(
    split: Split, batching: Batching, *, cfg: DataConfig, cache_dir: str | None = None
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's share of `split` in order, unaugmented, with weights 0 (padding) or 1.

    Summed over all pipelines, the weight-1 entries are every sample exactly once.
    """
    entries, steps = split.source(batching, Reading(cfg, cache_dir=cache_dir))
    return _batches(entries, batching, cfg, seed=0, epoch=0, augmenting=False, split=split), steps


def _batches(
    entries: tf.data.Dataset,
    batching: Batching,
    cfg: DataConfig,
    *,
    seed: int,
    epoch: int,
    augmenting: bool,
    split: Split,
) -> tf.data.Dataset:
    load = _loader(cfg, seed, epoch, augmenting)  # an image that fails: weight 0, see .failures
    ds = load_batches(entries, load, batching.per_replica_batch, split)
    ds = ds.map(_finisher(cfg, augmenting), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def _loader(cfg: DataConfig, seed: int, epoch: int, augmenting: bool) -> Callable:
    """Decode and size one sample; when augmenting, also draw its random transform."""
    aug, image_size, channels = cfg.augment, cfg.image_hw, cfg.channels

    @tf.autograph.experimental.do_not_convert
    def load(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        sample = sample_seed(seed, epoch, e["id"]) if augmenting else None
        if "image" in e:
            image = e["image"]
        elif augmenting and aug.random_resized_crop:
            image = decode_image(e.pop("data"), channels)
        else:
            image = decode_resized(e.pop("data"), image_size, channels)
        if augmenting and aug.random_resized_crop:
            image = random_resized_crop(image, sample, aug, image_size)
        out = {"image": image, "label": e["label"], "weight": e["weight"], "id": e["id"]}
        if augmenting:
            out["transform"], out["brightness"] = sample_transform(sample, aug, image_size)
        return out

    return load


def _finisher(cfg: DataConfig, augmenting: bool) -> Callable:
    """Apply the batch's transforms (or, with `augment_on: device`, hand them to the training
    step as "augment") and keep exactly the output contract's keys."""
    on_device = cfg.augment_on == "device"

    @tf.autograph.experimental.do_not_convert
    def finish(b: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = b["image"]
        out = {"label": b["label"], "weight": b["weight"], "id": b["id"]}
        if augmenting and on_device:
            out["augment"] = augment_parameters(b["transform"], b["brightness"])
        elif augmenting:
            image = apply_augmentation(image, b["transform"], b["brightness"], cfg.augment)
        return {"image": image, **out}

    return finish


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # Each worker already reads only its own share; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return options
