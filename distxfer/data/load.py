"""`load_splits`: from `DataConfig` to checked splits, before any training starts.

Everything that can be wrong with a dataset is found here, in plain Python and without
importing TensorFlow (this runs before the distributed engine starts): missing or empty
folders, classes that differ between splits, a validation split that leaves a class empty,
and image files the pipeline could not decode. Bad files stop the run with a list of them
(`data.bad_files=error`) or are dropped and logged (`data.bad_files=skip`). The per-class loss
weights (`data.class_weight`) follow from the training split's class counts, so they are found
here too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

from distxfer.config.schema import DataConfig
from distxfer.data.listing import (
    check_same_classes,
    list_class_folder,
    stratified_folds,
    stratified_split,
)
from distxfer.data.recordmeta import is_record_folder, read_meta, record_split
from distxfer.data.scan import quick_scan
from distxfer.data.scancache import cache_file, cached_quick_scan
from distxfer.data.splits import BadFile, DataSplits, Split
from distxfer.data.weighting import class_weights
from distxfer.errors import DataError

log = logging.getLogger("distxfer.data")

SHOWN_BAD_FILES = 5


def load_splits(cfg: DataConfig, seed: int, *, need_train: bool = True) -> DataSplits:
    """List, split and scan the configured data; raise `DataError` if it cannot be trained on.

    With `need_train=False` (evaluation), `data.train_dir` may be unset and the training
    split is neither scanned nor returned.
    """
    if need_train and not cfg.train_dir:
        raise DataError(
            "data.train_dir is not set; point it at a folder with one subfolder of "
            "images per class (or at a folder made by `distxfer data convert`)"
        )
    class_names: tuple[str, ...] | None = None
    splits: dict[str, Split | None] = {"train": None, "val": None, "test": None}
    if cfg.train_dir:
        class_names, splits = _load_train_dir(cfg, seed)
    for role, root in (("val", cfg.val_dir), ("test", cfg.test_dir)):
        if root:
            class_names, splits[role] = _load_other_dir(cfg, role, root, class_names)
    if class_names is None:
        raise DataError(
            "no data folder is set; set data.train_dir, or data.val_dir or "
            "data.test_dir to evaluate"
        )
    if need_train and len(class_names) < 2:
        raise DataError(
            f"data.train_dir: {cfg.train_dir} has one class ({class_names[0]!r}); a classifier"
            " needs at least two class folders"
        )
    if not need_train:
        splits["train"] = None
    splits, skipped = _drop_bad_files(cfg, splits, class_names)
    train = splits["train"]
    weights = None
    if train is not None:
        weights = class_weights(cfg.class_weight, class_names, train.class_counts(len(class_names)))
    return DataSplits(
        class_names, train, splits["val"], splits["test"], tuple(skipped), class_weights=weights
    )


def _load_train_dir(cfg: DataConfig, seed: int) -> tuple[tuple[str, ...], dict[str, Split | None]]:
    root = cfg.train_dir
    assert root is not None
    if is_record_folder(root):
        if cfg.folds:
            raise DataError(
                f"data.folds needs class folders, but data.train_dir {root} holds TFRecords;"
                " cross-validate on the class folders it was converted from"
            )
        meta = read_meta(root)
        if "train" not in meta["splits"]:
            raise DataError(
                f"data.train_dir: {root} holds no training records (only "
                f"{', '.join(meta['splits'])}); point it at a converted training set"
            )
        if cfg.val_split and not cfg.val_dir and "val" not in meta["splits"]:
            raise DataError(
                f"data.val_split cannot split {root}: it holds TFRecords converted "
                "without a validation split; re-convert with --val-split, or set "
                "data.val_dir"
            )
        found = {
            name: record_split(root, meta, name)
            for name in ("train", "val", "test")
            if name in meta["splits"]
        }
        return tuple(meta["class_names"]), {
            "train": found["train"],
            "val": found.get("val"),
            "test": found.get("test"),
        }
    class_names, everything = list_class_folder(root, follow_links=cfg.follow_links)
    if cfg.folds:
        fold_of = stratified_folds(everything.labels, class_names, cfg.folds, seed)
        train_idx, val_idx = (
            np.flatnonzero(fold_of != cfg.fold),
            np.flatnonzero(fold_of == cfg.fold),
        )
    elif cfg.val_split and not cfg.val_dir:
        train_idx, val_idx = stratified_split(everything.labels, class_names, cfg.val_split, seed)
    else:
        return class_names, {
            "train": dataclasses.replace(everything, name="train"),
            "val": None,
            "test": None,
        }
    return class_names, {
        "train": everything.subset(train_idx, "train"),
        "val": everything.subset(val_idx, "val"),
        "test": None,
    }


def _load_other_dir(
    cfg: DataConfig, role: str, root: str, class_names: tuple[str, ...] | None
) -> tuple[tuple[str, ...], Split]:
    key = f"data.{role}_dir"
    split: Split
    if is_record_folder(root):
        meta = read_meta(root)
        names = tuple(meta["class_names"])
        available = list(meta["splits"])
        chosen = role if role in available else available[0] if len(available) == 1 else None
        if chosen is None:
            raise DataError(
                f"{key}: {root} holds record splits {', '.join(available)} but none "
                f"named {role!r}; point {key} at a folder with one split"
            )
        split = dataclasses.replace(record_split(root, meta, chosen), name=role)
    else:
        names, listed = list_class_folder(root, follow_links=cfg.follow_links, key=key)
        split = dataclasses.replace(listed, name=role)
    if class_names is not None:
        check_same_classes(class_names, names, key, root)
    return names, split


def _drop_bad_files(
    cfg: DataConfig, splits: dict[str, Split | None], class_names: tuple[str, ...]
) -> tuple[dict[str, Split | None], list[BadFile]]:
    scanned = {role: s for role, s in splits.items() if s is not None and s.files_to_scan()}
    if cfg.scan == "off" or not scanned:
        return splits, []
    paths: list[str] = []
    sizes, mtimes = [], []
    for split in scanned.values():
        paths.extend(split.files_to_scan())
        split_sizes, split_mtimes = split.file_stats()
        sizes.append(split_sizes)
        mtimes.append(split_mtimes)
    stats = (np.concatenate(sizes), np.concatenate(mtimes))
    if len(dict.fromkeys(paths)) < len(paths):  # one file in two splits: scan it once
        first = dict(zip(reversed(paths), range(len(paths) - 1, -1, -1)))
        keep = sorted(first.values())
        paths = [paths[i] for i in keep]
        stats = (stats[0][keep], stats[1][keep])
    cache = cache_file(_listing_key(cfg)) if cfg.scan_cache else None
    bad = find_bad_files(paths, full=cfg.scan == "full", stats=stats, cache=cache)
    if not bad:
        return splits, []
    if cfg.bad_files == "error":
        action = "fix or remove them, or set data.bad_files=skip to train without them"
        raise DataError(describe_bad_files(bad, action=action), details=bad_file_lines(bad))
    log.warning(
        "%s", describe_bad_files(bad, action="skipping them (data.bad_files=skip); listed below")
    )
    for line in bad_file_lines(bad):
        log.warning("  %s", line)
    bad_paths = {b.path for b in bad}
    for role, split in scanned.items():
        kept = split.without(bad_paths)
        if not len(kept):
            raise DataError(
                f"every image of the {role} split is bad ({len(split)} files, e.g. "
                f"{bad[0]}); fix the files, the data.{role}_dir setting, or both"
            )
        splits[role] = kept
    train = splits["train"]
    if train is not None:
        counts = train.class_counts(len(class_names))
        emptied = [class_names[c] for c in np.flatnonzero(counts == 0)]
        if emptied:
            raise DataError(
                f"every training image of class(es) {', '.join(emptied)} is bad; "
                "fix the files or remove the class folder(s)"
            )
    return splits, bad


def _listing_key(cfg: DataConfig) -> str:
    """What names a listing's scan cache: its data folders, as absolute paths."""
    roots = (cfg.train_dir, cfg.val_dir, cfg.test_dir)
    return "|".join(os.path.abspath(os.path.expanduser(r)) if r else "" for r in roots)


def find_bad_files(
    paths: list[str],
    *,
    full: bool = False,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    cache: str | None = None,
) -> list[BadFile]:
    """Quick-scan `paths`; with `full`, also decode the rest with TensorFlow (in a subprocess).

    With a `cache` file and the paths' listed (sizes, mtimes) as `stats`, only files the cache
    has no verdict for are read (`distxfer.data.scancache`)."""
    started = time.monotonic()
    if cache and stats is not None:
        bad = cached_quick_scan(paths, *stats, cache)
    else:
        bad = quick_scan(paths)
    if full:
        from distxfer.data.fullscan import full_scan_in_subprocess

        flagged = {b.path for b in bad}
        bad += full_scan_in_subprocess([p for p in paths if p not in flagged])
    log.info(
        "scanned %d image files in %.1f s (%s): %d bad",
        len(paths),
        time.monotonic() - started,
        "full decode" if full else "quick",
        len(bad),
    )
    return bad


def describe_bad_files(bad: list[BadFile], *, action: str) -> str:
    """One self-contained line: how many files are bad, the first one and why, what to do."""
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"{len(bad)} image file(s) cannot be decoded, e.g. {bad[0]}{more}; {action}"


def bad_file_lines(bad: list[BadFile], limit: int = SHOWN_BAD_FILES) -> list[str]:
    """The first `limit` bad files with their reasons, then how many more there are."""
    lines = [str(b) for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(
            f"... and {len(bad) - limit} more (`distxfer data inspect DIR --max-bad N` lists N)"
        )
    return lines
