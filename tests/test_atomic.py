"""Atomic replacement: readers see the old version or the whole new one, for files and folders."""

from __future__ import annotations

import pytest

from distxfer.atomic import replacing, write_bytes


def test_a_file_is_replaced_whole_and_no_temporary_remains(tmp_path):
    target = tmp_path / "report.json"
    write_bytes(target, b"old")
    write_bytes(target, b"new", sync=True)
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failure_inside_the_block_keeps_the_old_version(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target, suffix=".keras") as tmp:
        assert tmp.name.endswith(".keras") and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_folder_with_contents_is_replaced_by_the_new_folder(tmp_path):
    target = tmp_path / "savedmodel"
    (target / "variables").mkdir(parents=True)
    (target / "old.pb").write_bytes(b"old")
    with replacing(target) as tmp:
        tmp.mkdir()
        (tmp / "new.pb").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.pb"]
    assert [p.name for p in tmp_path.iterdir()] == ["savedmodel"]
