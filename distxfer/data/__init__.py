"""The data layer: class folders or TFRecords -> checked splits -> tf.data batches.

    splits = load_splits(cfg.data, cfg.seed)            # plain Python, before TensorFlow starts
    batching = Batching(per_replica_batch=32, replicas_per_pipeline=2, num_pipelines=4,
                        pipeline=rank)
    ds, steps = train_dataset(splits.train, batching, cfg=cfg.data, seed=cfg.seed, epoch=epoch)

This package exports what runs before the distributed engine starts (listing, checking and
splitting; no TensorFlow). What builds tf.data pipelines is imported from its own module:
`distxfer.data.pipeline` (train_dataset, eval_dataset), `distxfer.data.tfrecords` (convert),
`distxfer.data.cache`, `distxfer.data.demo`.
"""

from __future__ import annotations

from distxfer.data.inspection import InspectReport, inspect_folder, render_report
from distxfer.data.layout import Batching, make_batching
from distxfer.data.load import describe_bad_files, load_splits
from distxfer.data.recordmeta import is_record_folder
from distxfer.data.scan import quick_scan
from distxfer.data.splits import BadFile, DataSplits, FolderSplit, RecordSplit, Split

__all__ = [
    "BadFile",
    "Batching",
    "DataSplits",
    "FolderSplit",
    "InspectReport",
    "RecordSplit",
    "Split",
    "describe_bad_files",
    "inspect_folder",
    "is_record_folder",
    "load_splits",
    "make_batching",
    "quick_scan",
    "render_report",
]
