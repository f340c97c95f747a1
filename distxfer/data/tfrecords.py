"""Class folders -> sharded TFRecord files, and the reading side the pipeline uses.

A record holds the file's original encoded bytes (no re-encoding, no quality loss), its label,
its sample id (its index in the split, as for a folder split) and its source path. Samples
are dealt to shards in a seeded random order, so every shard mixes all classes and a worker
reading a few shards still sees every class. Shards are written under temporary names and
renamed; `meta.json` is written last, so a folder with one is complete.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import tensorflow as tf

from distxfer.atomic import replacing
from distxfer.config.schema import DataConfig
from distxfer.data.load import load_splits
from distxfer.data.recordmeta import META_FILE, is_record_folder, write_meta
from distxfer.data.splits import FolderSplit
from distxfer.errors import DataError

log = logging.getLogger("distxfer.data")

MIN_SHARDS = 16  # so up to 16 workers each read their own files
SHARD_BYTES = 128 * 1024 * 1024  # TensorFlow's advice: shards of 100 MB or more
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.int64),
}


def convert_to_tfrecords(
    src_dir: str,
    out_dir: str,
    *,
    shards: int | None = None,
    val_split: float = 0.0,
    seed: int = 0,
    test_dir: str | None = None,
    follow_links: bool = False,
    scan: str = "quick",
    bad_files: str = "error",
) -> dict[str, Any]:
    """Write `src_dir` (class folders) as TFRecords in `out_dir`; return what meta.json says.

    `shards` is the file count of the training split (default: one per ~128 MB, at least
    16, at most one per image); smaller splits get the same count or one per image.
    The split, scan and bad-file rules are those of training (`load_splits`).
    """
    cfg = DataConfig(
        train_dir=src_dir,
        val_split=val_split,
        test_dir=test_dir,
        scan=scan,
        bad_files=bad_files,
        follow_links=follow_links,
    )  # type: ignore[arg-type]
    cfg.check("convert")
    for folder in (src_dir, test_dir):
        if folder and is_record_folder(folder):
            raise DataError(
                f"{folder} already holds TFRecords (it has a {META_FILE}); point the "
                "converter at a folder of class folders"
            )
    splits = load_splits(cfg, seed)  # class folders only (checked above): FolderSplits
    _prepare(out_dir)
    train_shards = shards or default_shards(cast(FolderSplit, splits.train))
    written: dict[str, Any] = {}
    for name, found in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if found is not None:
            split = cast(FolderSplit, found)
            count = max(1, min(len(split), train_shards))
            written[name] = _write_split(split, out_dir, name, count, seed)
            written[name]["class_counts"] = split.class_counts(splits.num_classes).tolist()
    meta = {
        "class_names": list(splits.class_names),
        "splits": written,
        "source": os.path.abspath(src_dir),
        "val_split": val_split,
        "seed": seed,
        "skipped": [[b.path, b.reason] for b in splits.skipped],
    }
    write_meta(out_dir, meta)
    log.info(
        "wrote %s",
        ", ".join(
            f"{n}: {s['count']} images in {len(s['files'])} files" for n, s in written.items()
        ),
    )
    return meta


def default_shards(split: FolderSplit) -> int:
    """One shard per ~128 MB, at least MIN_SHARDS, never more than one per image."""
    by_size = math.ceil(int(np.clip(split.sizes, 0, None).sum()) / SHARD_BYTES)
    return max(1, min(len(split), max(MIN_SHARDS, by_size)))


def _prepare(out_dir: str) -> None:
    if is_record_folder(out_dir):
        raise DataError(
            f"{out_dir} already holds converted records ({META_FILE}); delete it or "
            "choose another output folder"
        )
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # leftovers of an interrupted conversion
        if ".tfrecord" in name:
            os.remove(os.path.join(out_dir, name))


def _write_split(split: FolderSplit, out_dir: str, name: str, shards: int, seed: int) -> dict:
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))
    )
    parts = np.array_split(rng.permutation(len(split)), shards)
    names = [f"{name}-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)]
    with ThreadPoolExecutor(max_workers=min(8, shards)) as pool:
        list(
            pool.map(
                lambda k: _write_shard(split, parts[k], os.path.join(out_dir, names[k])),
                range(shards),
            )
        )
    return {
        "count": len(split),
        "files": [{"name": n, "count": len(p)} for n, p in zip(names, parts, strict=True)],
    }


def _write_shard(split: FolderSplit, ids: np.ndarray, path: str) -> None:
    with replacing(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in ids:
            with open(split.paths[i], "rb") as f:
                data = f.read()
            writer.write(_example(data, int(split.labels[i]), int(i), split.paths[i]))


def _example(data: bytes, label: int, sample_id: int, path: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[sample_id])),
        "path": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[path.encode("utf-8", "surrogateescape")])
        ),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def read_records(files: Sequence[str]) -> tf.data.Dataset:
    """Serialized records of `files`, interleaved record by record in a fixed order."""
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    return ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 8),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """One record -> {"data": encoded image bytes, "label": int32, "id": int64}."""
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "data": parsed["image"],
        "label": tf.cast(parsed["label"], tf.int32),
        "id": parsed["id"],
    }
