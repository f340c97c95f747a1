"""Images that fail to decode inside the input pipeline: kept in place as weight-0 entries, and
recorded for the training loop to report (`distxfer.train.health` stops the run naming them,
or logs them and goes on, by `data.bad_files`).

The quick scan reads only the ends of each file, so an image damaged in the middle reaches the
pipeline. Each batch is decoded as a whole, as fast as before; a batch in which an image fails
is decoded again one image at a time, and each image that fails becomes a zero image of weight
0 at its own place. So every pipeline still yields the same batches in the same order, every
worker takes the same steps and sums stay exact; only the failed samples are left out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import tensorflow as tf

from distxfer.data.splits import Split

_LOCK = threading.Lock()
_FAILED: list[tuple[Split, int]] = []  # (split, sample id) of this process, not yet reported


def pending() -> int:
    """How many failures this process recorded since the last `take`."""
    with _LOCK:
        return len(_FAILED)


def take() -> list[str]:
    """The recorded failures, as sample names (file paths where there are files), cleared."""
    with _LOCK:
        failed, _FAILED[:] = list(_FAILED), []
    return [split.sample_name(sample_id) for split, sample_id in failed]


def load_batches(
    entries: tf.data.Dataset, load: Callable, batch: int, split: Split
) -> tf.data.Dataset:
    """`load` mapped over `entries` and batched by `batch` (which divides their number), with
    every entry `load` fails on replaced in place by a weight-0 zero image (see above)."""
    if "data" not in entries.element_spec:  # decoded images (the cache): nothing can fail
        return entries.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(
            batch, drop_remainder=True
        )
    black = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))

    @tf.autograph.experimental.do_not_convert
    def dropped(entry: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = load(dict(entry, data=black))  # the same structure and shapes as a good sample
        noted = tf.py_function(_note(split), [entry["id"]], Tout=tf.float32)
        noted.set_shape([])
        return dict(out, weight=noted * 0.0, image=tf.zeros_like(out["image"]))

    @tf.autograph.experimental.do_not_convert
    def one(entry: dict[str, tf.Tensor]) -> tf.data.Dataset:
        tried = tf.data.Dataset.from_tensors(entry).map(load).ignore_errors()
        return tried.concatenate(tf.data.Dataset.from_tensors(entry).map(dropped)).take(1)

    @tf.autograph.experimental.do_not_convert
    def attempt(group: dict[str, tf.Tensor]) -> tf.data.Dataset:
        whole = tf.data.Dataset.from_tensors(group).unbatch().map(load)
        one_by_one = tf.data.Dataset.from_tensors(group).unbatch().flat_map(one)
        whole, one_by_one = (d.batch(batch, drop_remainder=True) for d in (whole, one_by_one))
        return whole.ignore_errors().concatenate(one_by_one).take(1)

    groups = entries.batch(batch, drop_remainder=True)
    return groups.interleave(attempt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _note(split: Split) -> Callable[[tf.Tensor], float]:
    def note(sample_id: tf.Tensor) -> float:
        with _LOCK:
            _FAILED.append((split, int(sample_id)))
        return 1.0

    return note
