"""The `meta.json` of a TFRecord folder: what `distxfer data convert` wrote, read without TF.

    {"format": "distxfer-tfrecords", "version": 1, "class_names": [...],
     "splits": {"train": {"count": 1200, "files": [{"name": "train-00000-of-00016.tfrecord",
                                                    "count": 75}, ...]}, "val": {...}},
     "source": "/data/pets", "val_split": 0.1, "seed": 0, "skipped": []}

The converter writes it last and atomically, so a folder with a readable meta.json is complete.
"""

from __future__ import annotations

import json
import os
from typing import Any

from distxfer.atomic import write_bytes
from distxfer.data.splits import RecordSplit
from distxfer.errors import DataError

META_FILE = "meta.json"
FORMAT = "distxfer-tfrecords"
VERSION = 1


def is_record_folder(path: str) -> bool:
    """True if `path` is a folder written by `convert_to_tfrecords` (it holds a meta.json)."""
    return os.path.isfile(os.path.join(os.path.expanduser(path), META_FILE))


def read_meta(folder: str) -> dict[str, Any]:
    """The checked meta.json of `folder`; DataError if it is not one we can read."""
    path = os.path.join(os.path.expanduser(folder), META_FILE)
    redo = f"re-run `distxfer data convert` into an empty folder to rewrite {folder}"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} ({error}); {redo}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(
            f'{path} was not written by distxfer (no "format": "{FORMAT}"); '
            "point the data setting at a class-folder dataset or a converted folder"
        )
    if meta.get("version") != VERSION:
        raise DataError(
            f"{path} has format version {meta.get('version')}, this distxfer reads "
            f"version {VERSION}; {redo}"
        )
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not splits or not meta.get("class_names"):
        raise DataError(f"{path} lists no splits or no classes; {redo}")
    return meta


def record_split(folder: str, meta: dict[str, Any], name: str) -> RecordSplit:
    """The split `name` of a record folder, with its files checked to exist."""
    folder = os.path.abspath(os.path.expanduser(folder))
    entry = meta["splits"][name]
    files = tuple(os.path.join(folder, f["name"]) for f in entry["files"])
    counts = tuple(int(f["count"]) for f in entry["files"])
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DataError(
            f"{len(missing)} record file(s) listed in {folder}/{META_FILE} are "
            f"missing, e.g. {missing[0]}; copy the whole folder again or re-convert"
        )
    per_class = tuple(int(c) for c in entry.get("class_counts", ()))
    return RecordSplit(name, files, counts, per_class)


def write_meta(folder: str, meta: dict[str, Any]) -> None:
    """Write meta.json atomically (temp file, then rename), so readers never see half of it."""
    path = os.path.join(folder, META_FILE)
    data = json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1)
    write_bytes(path, data.encode("utf-8"), sync=True)
