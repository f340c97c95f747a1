"""Starting again on the same data: the scan cache and the listing shared by rank 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import cli_env
from imagefiles import class_tree, write

from distxfer.config.schema import DataConfig
from distxfer.data import load, scancache, sharedlisting
from distxfer.data.load import load_splits
from distxfer.errors import DataError


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A class tree, its own cache folder, and a record of every file the quick scan reads."""
    root = tmp_path / "data"
    class_tree(root, {"a": 3, "b": 3})
    monkeypatch.setenv("DISTXFER_CACHE", str(tmp_path / "cache"))
    scanned: list[str] = []
    real = scancache.quick_scan

    def counting(paths, **kwargs):
        scanned.extend(paths)
        return real(paths, **kwargs)

    monkeypatch.setattr(scancache, "quick_scan", counting)
    monkeypatch.setattr(load, "quick_scan", counting)
    return root, scanned


def test_a_second_start_scans_no_unchanged_file(data):
    root, scanned = data
    load_splits(DataConfig(train_dir=str(root)), seed=0)
    assert len(scanned) == 6
    scanned.clear()
    load_splits(DataConfig(train_dir=str(root)), seed=0)
    assert scanned == []


REQUEUED_START = """
import logging, sys
from distxfer.config.schema import DataConfig
from distxfer.data.sharedlisting import load_splits_once
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
load_splits_once(DataConfig(train_dir=sys.argv[1]), 0, rank=0, size=int(sys.argv[2]))
"""


def test_a_requeued_start_in_a_new_process_reads_no_unchanged_file(data, tmp_path):
    """What a requeued Slurm job does: a new process, same config and environment (so the same
    DISTXFER_CACHE and run directory), one rank or rank 0 of several, finds the first's verdicts."""
    root, scanned = data
    load_splits(DataConfig(train_dir=str(root)), seed=0)
    assert len(scanned) == 6
    for size in ("1", "2"):
        requeued = subprocess.run(
            [sys.executable, "-c", REQUEUED_START, str(root), size],
            env=cli_env(),  # DISTXFER_CACHE as the first start had it
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "6 file(s) unchanged, 0 scanned" in requeued.stdout, requeued.stdout


def test_a_changed_file_is_scanned_again_and_its_verdict_is_new(data):
    root, scanned = data
    load_splits(DataConfig(train_dir=str(root)), seed=0)
    scanned.clear()
    changed = root / "b" / "img0001.png"
    write(changed, b"not an image any more")
    with pytest.raises(DataError, match="img0001.png is a text file"):
        load_splits(DataConfig(train_dir=str(root)), seed=0)
    assert scanned == [str(changed)]


def test_a_bad_files_verdict_is_kept_and_a_new_file_is_scanned(data):
    root, scanned = data
    write(root / "a" / "broken.png", b"")
    cfg = DataConfig(train_dir=str(root), bad_files="skip")
    assert [b.path for b in load_splits(cfg, seed=0).skipped] == [str(root / "a" / "broken.png")]
    scanned.clear()
    class_tree(root, {"c": 1}, seed=5)
    again = load_splits(cfg, seed=0)
    assert [b.path for b in again.skipped] == [str(root / "a" / "broken.png")]
    assert scanned == [str(root / "c" / "img0000.png")]


def test_scan_cache_off_reads_every_file_every_time(data):
    root, scanned = data
    for _ in range(2):
        load_splits(DataConfig(train_dir=str(root), scan_cache=False), seed=0)
    assert len(scanned) == 12


def test_other_ranks_take_rank_0s_listing_without_listing(data, monkeypatch, tmp_path):
    root, scanned = data
    cfg = DataConfig(train_dir=str(root), val_split=0.34)
    chief = sharedlisting.load_splits_once(cfg, 0, rank=0, size=2)
    scanned.clear()
    monkeypatch.setattr(sharedlisting, "load_splits", lambda *a: pytest.fail("rank 1 listed"))
    other = sharedlisting.load_splits_once(cfg, 0, rank=1, size=2)
    assert sharedlisting.fingerprints(other) == sharedlisting.fingerprints(chief)
    assert other.train.paths == chief.train.paths and scanned == []


def test_rank_0s_data_error_stops_the_other_ranks_with_the_same_words(data):
    root, _ = data
    write(root / "a" / "broken.png", b"")
    cfg = DataConfig(train_dir=str(root))
    with pytest.raises(DataError) as on_chief:
        sharedlisting.load_splits_once(cfg, 0, rank=0, size=2)
    with pytest.raises(DataError) as on_other:
        sharedlisting.load_splits_once(cfg, 0, rank=1, size=2)
    assert str(on_other.value) == str(on_chief.value)


def test_a_rank_lists_the_data_itself_when_rank_0s_listing_never_appears(data, monkeypatch):
    root, scanned = data
    monkeypatch.setattr(sharedlisting, "MARKER_WAIT", 0.3)
    splits = sharedlisting.load_splits_once(DataConfig(train_dir=str(root)), 0, rank=1, size=2)
    assert len(splits.train) == 6 and len(scanned) == 6


def test_a_listing_older_than_this_start_is_not_taken(data, monkeypatch):
    root, _ = data
    cfg = DataConfig(train_dir=str(root))
    sharedlisting.load_splits_once(cfg, 0, rank=0, size=2)
    old = sharedlisting.RECENT + 10
    path = sharedlisting.result_file(cfg, 0)
    os.utime(path, (path.stat().st_atime - old, path.stat().st_mtime - old))
    monkeypatch.setattr(sharedlisting, "MARKER_WAIT", 0.3)
    listed = []
    monkeypatch.setattr(sharedlisting, "load_splits", lambda *a: listed.append(a) or "own")
    assert sharedlisting.load_splits_once(cfg, 0, rank=1, size=2) == "own" and listed
