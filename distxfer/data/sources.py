"""Each input kind's entries as a tf.data source, before decoding: one function per kind.

An entry is {"id": int64, "label": int32, "weight": float32} plus the encoded file ("data") or,
from the decoded-image cache, the image itself ("image"). `distxfer.data.pipeline` decodes,
augments and batches entries of any kind the same way. Padding entries have weight 0.

Folder splits follow `distxfer.data.plan.plan_epoch`: which sample sits where is fixed by
(seed, epoch) alone, so any worker count at the same global batch takes the same steps and a
resumed run skips exactly the steps already taken. Record splits are read file by file
(`plan_file_shards`) through a seeded shuffle buffer and padded with weight-0 records.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np
import tensorflow as tf

from distxfer.data.cache import cached_images
from distxfer.data.featuresplit import FeatureSplit
from distxfer.data.layout import Batching, Reading, record_layout, sample_plan
from distxfer.data.splits import FolderSplit, RecordSplit, Split
from distxfer.data.tfrecords import parse_record, read_records

log = logging.getLogger("distxfer.data")

SHUFFLE_BUFFER = 4096  # records; a record split's files are also shuffled each epoch
AUTOTUNE = tf.data.AUTOTUNE


def folder_entries(
    split: FolderSplit, batching: Batching, reading: Reading
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's planned entries: the file's bytes, or the cached image."""
    plan = sample_plan(len(split), batching, reading)
    cfg, cached = reading.cfg, None
    if cfg.cache != "none":
        cached = cached_images(split, cfg.image_hw, cfg.channels, cfg.cache, reading.cache_dir)
    labels, paths = sample_tables(split)

    @tf.autograph.experimental.do_not_convert
    def fields(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        e = dict(e, label=tf.gather(labels, e["id"]))
        if cached is not None:
            e["image"] = tf.gather(cached, e["id"])
        else:
            e["data"] = tf.io.read_file(tf.gather(paths, e["id"]))
        return e

    ds = tf.data.Dataset.from_tensor_slices({"id": plan.indices, "weight": plan.weights})
    return ds.map(fields, num_parallel_calls=AUTOTUNE), plan.steps


_TABLES: weakref.WeakKeyDictionary[Split, tuple[tf.Tensor, tf.Tensor]] = weakref.WeakKeyDictionary()


def sample_tables(split: FolderSplit) -> tuple[tf.Tensor, tf.Tensor]:
    """The split's labels and paths as tensors on the CPU, made once per split and process:
    every epoch's dataset looks samples up in the same two tables (for a million files, making
    the path table takes seconds and its memory is counted once)."""
    if split not in _TABLES:
        with tf.device("/CPU:0"):
            _TABLES[split] = (tf.constant(split.labels, tf.int32), tf.constant(list(split.paths)))
    return _TABLES[split]


def feature_entries(
    split: FeatureSplit, batching: Batching, reading: Reading
) -> tuple[tf.data.Dataset, int]:
    """This pipeline's planned entries with each sample's feature row as "image"."""
    plan = sample_plan(len(split), batching, reading)
    if split not in _TABLES:
        with tf.device("/CPU:0"):
            _TABLES[split] = (tf.constant(split.labels, tf.int32), tf.constant(split.features))
    labels, features = _TABLES[split]

    @tf.autograph.experimental.do_not_convert
    def fields(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return dict(e, label=tf.gather(labels, e["id"]), image=tf.gather(features, e["id"]))

    ds = tf.data.Dataset.from_tensor_slices({"id": plan.indices, "weight": plan.weights})
    return ds.map(fields, num_parallel_calls=AUTOTUNE), plan.steps


def record_entries(
    split: RecordSplit, batching: Batching, reading: Reading
) -> tuple[tf.data.Dataset, int]:
    """Records of this pipeline, padded with weight-0 records to whole steps."""
    if reading.cfg.cache != "none":
        _warn_once(
            f"data.cache={reading.cfg.cache} is ignored for TFRecord input: records are read "
            "in file order, not by sample"
        )
    seed, epoch, training, shuffle = reading.seed, reading.epoch, reading.training, reading.shuffle
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
    start = min(reading.start_step, layout.steps)
    ds = real.concatenate(padding).take(layout.steps * per_pipeline).enumerate()
    ds = ds.skip(start * per_pipeline)  # before parsing and decoding: skipping is cheap
    weights = tf.constant(layout.step_weights)

    @tf.autograph.experimental.do_not_convert
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
