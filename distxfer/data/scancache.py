"""The quick scan's verdicts kept between starts, keyed by (path, size, modification time).

A restart (a requeued Slurm job, a resumed run, another run on the same data) lists the folders
and stats every file as before, but reads the ends of only the files that are new or whose size
or modification time changed: on a million-file dataset that is seconds instead of minutes, and
no storm of reads on a shared file system. The verdicts of one listing live in one file per
data folder under `$DISTXFER_CACHE/scan` (default ~/.cache/distxfer/scan), written whole or not
at all; `data.scan_cache: false` turns the cache off. Plain Python and numpy, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distxfer.atomic import replacing
from distxfer.data.scan import quick_scan
from distxfer.data.splits import BadFile

log = logging.getLogger("distxfer.data")

VERSION = 1
OK = -1  # verdict code of a file the quick scan accepted


def cache_root() -> str:
    """distxfer's cache folder: $DISTXFER_CACHE, else ~/.cache/distxfer."""
    root = os.environ.get("DISTXFER_CACHE") or os.path.join("~", ".cache", "distxfer")
    return os.path.expanduser(root)


def cache_file(key: str, folder: str | None = None) -> str:
    """Where the verdicts for the listing named `key` (its data folders) are kept."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(folder or os.path.join(cache_root(), "scan"), f"{digest}.npz")


@dataclass
class Verdicts:
    """The quick scan's verdict on each file of one listing."""

    paths: tuple[str, ...]
    sizes: np.ndarray  # int64
    mtimes: np.ndarray  # int64 ns
    codes: np.ndarray  # int32: OK, or an index into `problems`
    problems: list[str]

    def bad_files(self) -> list[BadFile]:
        return [
            BadFile(self.paths[i], self.problems[c]) for i, c in enumerate(self.codes) if c >= 0
        ]


def cached_quick_scan(
    paths: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray, path: str
) -> list[BadFile]:
    """`quick_scan(paths)`, reading only the files the cache at `path` has no verdict for."""
    sizes, mtimes = np.asarray(sizes, np.int64), np.asarray(mtimes, np.int64)
    old = load(path)
    if old is not None and old.paths == tuple(paths):
        same = (old.sizes == sizes) & (old.mtimes == mtimes) & (sizes >= 0)
        rows = np.where(same, np.arange(len(paths)), -1)
    else:
        rows = _match(old, paths, sizes, mtimes)
    todo = np.flatnonzero(rows < 0)
    fresh = {b.path: b.reason for b in quick_scan([paths[i] for i in todo])}
    problems = list(old.problems) if old is not None else []
    codes = np.full(len(paths), OK, np.int32)
    if old is not None:
        kept = rows >= 0
        codes[kept] = old.codes[rows[kept]]
    for i in todo:
        reason = fresh.get(paths[i])
        if reason is not None:
            if reason not in problems:
                problems.append(reason)
            codes[i] = problems.index(reason)
    codes, problems = _compact(codes, problems)
    log.info(
        "scan cache %s: %d file(s) unchanged, %d scanned", path, len(paths) - len(todo), len(todo)
    )
    verdicts = Verdicts(tuple(paths), sizes, mtimes, codes, problems)
    if len(todo) or old is None or old.paths != verdicts.paths:
        save(path, verdicts)
    return verdicts.bad_files()


def _compact(codes: np.ndarray, problems: list[str]) -> tuple[np.ndarray, list[str]]:
    """Only the problems some file has, renumbered in order."""
    used = np.unique(codes[codes >= 0])
    renumber = np.full(len(problems) + 1, OK, np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    return np.where(codes >= 0, renumber[codes], OK).astype(np.int32), [problems[i] for i in used]


def _match(
    old: Verdicts | None, paths: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray
) -> np.ndarray:
    """For each listed file, its row in `old` if its size and time are unchanged, else -1."""
    rows = np.full(len(paths), -1, np.int64)
    if old is None:
        return rows
    where = {p: i for i, p in enumerate(old.paths)}
    for i, p in enumerate(paths):
        j = where.get(p, -1)
        if j >= 0 and sizes[i] >= 0 and old.sizes[j] == sizes[i] and old.mtimes[j] == mtimes[i]:
            rows[i] = j
    return rows


def save(path: str, verdicts: Verdicts) -> None:
    """Write `verdicts` whole or not at all (a failure only costs the next start a rescan)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with replacing(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                header=text_blob(json.dumps({"version": VERSION, "problems": verdicts.problems})),
                paths=text_blob("\0".join(verdicts.paths)),
                sizes=verdicts.sizes,
                mtimes=verdicts.mtimes,
                codes=verdicts.codes,
            )
    except OSError as error:
        log.warning("could not write the scan cache %s (%s); the next start rescans", path, error)


def load(path: str) -> Verdicts | None:
    """The verdicts at `path`, or None if there are none (or they cannot be read)."""
    try:
        with np.load(path) as data:
            meta = json.loads(blob_text(data["header"]))
            if meta.get("version") != VERSION:
                return None
            text = blob_text(data["paths"])
            paths = tuple(text.split("\0")) if text else ()
            verdicts = Verdicts(
                paths, data["sizes"], data["mtimes"], data["codes"], list(meta["problems"])
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    n = len(verdicts.paths)
    if not len(verdicts.sizes) == len(verdicts.mtimes) == len(verdicts.codes) == n:
        return None
    return verdicts


def text_blob(text: str) -> np.ndarray:
    """A string as a uint8 array, for .npz files (any file name survives the round trip)."""
    return np.frombuffer(text.encode("utf-8", "surrogateescape"), np.uint8)


def blob_text(blob: np.ndarray) -> str:
    """The string `text_blob` stored."""
    return blob.tobytes().decode("utf-8", "surrogateescape")
