"""One listing per launch: rank 0 lists and scans the data, the other ranks read its result.

Listing and scanning a large dataset on every rank multiplies the metadata traffic on a shared
file system by the number of ranks. So before the engine starts (and without any collective,
which needs the engine), rank 0 announces that it is listing (a marker file), runs
`load_splits` (with its scan cache) and writes what it found, or the error that stops the run,
to one file under `$DISTXFER_CACHE/scan`, whole or not at all. The other ranks wait for that
file. A rank that sees neither marker nor result within `MARKER_WAIT` seconds (the cache folder
is not shared with rank 0's node) lists the data itself, as before. Once the engine runs,
`agree_on_splits` checks that every rank holds the chief's splits (a rank that read a stale
result reads the fresh one), so a rank never trains on other data than the chief's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from distxfer.atomic import remove, replacing, write_bytes
from distxfer.config.schema import DataConfig
from distxfer.data.load import load_splits
from distxfer.data.scancache import blob_text, cache_root, text_blob
from distxfer.data.splits import BadFile, DataSplits, FolderSplit, RecordSplit, Split
from distxfer.errors import DataError

log = logging.getLogger("distxfer.data")

MARKER_WAIT = 15.0  # seconds a rank looks for rank 0's marker before listing the data itself
RECENT = 120.0  # a marker or result this much older than a rank's start is a previous launch's
GIVE_UP = 3600.0  # seconds to wait for a listing rank 0 announced
POLL = 0.2
KINDS = {cls.__name__: cls for cls in (FolderSplit, RecordSplit)}


def result_file(cfg: DataConfig, seed: int, folder: str | None = None) -> Path:
    """Where rank 0 publishes the splits of this data config and seed."""
    text = json.dumps([dataclasses.asdict(cfg), seed], sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return Path(folder or os.path.join(cache_root(), "scan")) / f"splits-{digest}.npz"


def load_splits_once(
    cfg: DataConfig, seed: int, *, rank: int, size: int, folder: str | None = None
) -> DataSplits:
    """`load_splits(cfg, seed)`, computed by rank 0 alone when several ranks start together."""
    if size <= 1:
        return load_splits(cfg, seed)
    path = result_file(cfg, seed, folder)
    if rank == 0:
        return _list_and_publish(cfg, seed, path)
    return _wait_for_rank0(cfg, seed, path)


def _list_and_publish(cfg: DataConfig, seed: int, path: Path) -> DataSplits:
    marker = path.with_suffix(".listing")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(marker, str(time.time()).encode())
    except OSError as error:
        log.warning("cannot share the data listing through %s (%s)", path.parent, error)
        return load_splits(cfg, seed)
    try:
        splits = load_splits(cfg, seed)
    except DataError as error:
        _publish(path, None, str(error))
        raise
    else:
        _publish(path, splits, None)
        return splits
    finally:
        remove(marker)


def _wait_for_rank0(cfg: DataConfig, seed: int, path: Path) -> DataSplits:
    started = time.time()
    marker = path.with_suffix(".listing")
    while True:
        if _written_since(path, started - RECENT):
            found = read_result(path)
            if found is not None:
                return found
        now = time.time()
        if not _written_since(marker, started - RECENT) and now - started > MARKER_WAIT:
            log.warning(
                "rank 0's data listing did not appear in %s; listing the data on this rank"
                " (point DISTXFER_CACHE at a folder every node shares to list only once)",
                path.parent,
            )
            return load_splits(cfg, seed)
        if now - started > GIVE_UP:
            raise DataError(
                f"rank 0 did not finish listing the data within {GIVE_UP:.0f} s (waiting for"
                f" {path}); check rank 0's log"
            )
        time.sleep(POLL)


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def agree_on_splits(engine: Any, splits: DataSplits, cfg: DataConfig, seed: int) -> DataSplits:
    """The chief's splits on every rank (a collective: every rank calls it once the engine
    runs). A rank whose listing differs reads the chief's published result again."""
    if engine.size == 1:
        return splits
    chief = engine.broadcast_object(fingerprints(splits))
    if fingerprints(splits) != chief:
        fresh = read_result(result_file(cfg, seed))
        splits = fresh if fresh is not None and fingerprints(fresh) == chief else splits
    agreed = float(fingerprints(splits) == chief)
    if engine.all_sum([np.array([agreed])])[0][0] < engine.size:
        raise DataError(
            "the ranks listed different data (did files change while the job started?);"
            " run the job again"
        )
    return splits


def fingerprints(splits: DataSplits) -> list[str]:
    parts = [
        s.fingerprint if s is not None else "" for s in (splits.train, splits.val, splits.test)
    ]
    return [*parts, "\0".join(splits.class_names)]


def _publish(path: Path, splits: DataSplits | None, error: str | None) -> None:
    header: dict[str, Any] = {"error": error, "splits": {}}
    arrays: dict[str, np.ndarray] = {}
    if splits is not None:
        header["class_names"] = list(splits.class_names)
        header["skipped"] = [[b.path, b.reason] for b in splits.skipped]
        for role in ("train", "val", "test"):
            split = getattr(splits, role)
            if split is not None:
                header["splits"][role] = _encode(split, role, arrays)
    try:
        with replacing(path, suffix=".npz") as tmp:
            np.savez(tmp, header=text_blob(json.dumps(header)), **arrays)
    except OSError as problem:
        log.warning("could not write the shared data listing %s (%s)", path, problem)


def read_result(path: Path) -> DataSplits | None:
    """The splits rank 0 published at `path` (DataError if it published an error), or None."""
    try:
        with np.load(path) as data:
            header = json.loads(blob_text(data["header"]))
            if header["error"]:
                raise DataError(header["error"])
            found = {role: _decode(r, role, data) for role, r in header["splits"].items()}
    except (OSError, ValueError, KeyError):
        return None
    skipped = tuple(BadFile(p, r) for p, r in header["skipped"])
    return DataSplits(
        tuple(header["class_names"]),
        found.get("train"),
        found.get("val"),
        found.get("test"),
        skipped,
    )


def _encode(split: Split, role: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A split dataclass as JSON fields plus arrays (tuples of strings as one blob)."""
    record: dict[str, Any] = {"kind": type(split).__name__, "json": {}, "arrays": {}}
    for f in dataclasses.fields(split):  # type: ignore[arg-type]
        value = getattr(split, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{role}.{f.name}"] = value
            record["arrays"][f.name] = "array"
        elif isinstance(value, tuple) and value and isinstance(value[0], str):
            arrays[f"{role}.{f.name}"] = text_blob("\0".join(value))
            record["arrays"][f.name] = "strings"
        else:
            record["json"][f.name] = list(value) if isinstance(value, tuple) else value
    return record


def _decode(record: dict[str, Any], role: str, data: Any) -> Split:
    kind = KINDS[record["kind"]]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record["json"].items()}
    for name, how in record["arrays"].items():
        array = data[f"{role}.{name}"]
        values[name] = tuple(blob_text(array).split("\0")) if how == "strings" else array
    return kind(**values)
