"""The data layer: class folders or TFRecords -> checked splits -> tf.data batches.

    splits = load_splits(cfg.data, cfg.seed)            # plain Python, before TensorFlow starts
    ds, steps = train_dataset(splits.train, cfg=cfg.data, image_size=(224, 224), channels=3,
                              per_replica_batch=32, replicas_per_pipeline=2, num_pipelines=4,
                              pipeline=rank, seed=cfg.seed, epoch=epoch, cache_dir=None)

Names that need TensorFlow (or Pillow, for the demo) are imported on first use, so
`import distxfer.data` stays light enough to run before the distributed engine starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from distxfer.data.inspection import InspectReport, inspect_folder, render_report
from distxfer.data.layout import epoch_steps
from distxfer.data.load import describe_bad_files, load_splits
from distxfer.data.recordmeta import is_record_folder
from distxfer.data.scan import quick_scan
from distxfer.data.splits import BadFile, DataSplits, FolderSplit, RecordSplit, Split

_LAZY = {  # these import TensorFlow, or Pillow (demo)
    "train_dataset": "distxfer.data.pipeline",
    "eval_dataset": "distxfer.data.pipeline",
    "convert_to_tfrecords": "distxfer.data.tfrecords",
    "find_undecodable": "distxfer.data.fullscan",
    "write_demo_datasets": "distxfer.data.demo",
    "DemoPaths": "distxfer.data.demo",
}

__all__ = [
    "BadFile",
    "DataSplits",
    "FolderSplit",
    "InspectReport",
    "RecordSplit",
    "Split",
    "describe_bad_files",
    "epoch_steps",
    "inspect_folder",
    "is_record_folder",
    "load_splits",
    "quick_scan",
    "render_report",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distxfer.data' has no attribute {name!r}")
