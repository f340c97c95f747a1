"""Finding bad image files before training: quick scan, full scan, bad-file policies, inspect."""

from __future__ import annotations

import logging

import pytest
from imagefiles import bad_images, class_tree, encode, noise, write

from distxfer.config.schema import DataConfig
from distxfer.data.inspection import inspect_folder, render_report
from distxfer.data.load import load_splits
from distxfer.data.scan import check_file, quick_scan
from distxfer.errors import DataError

BAD = bad_images()


def corrupt_png() -> bytes:
    """A PNG whose header and end are intact but whose pixel data is damaged."""
    data = bytearray(encode(noise(64, 64), "PNG"))
    start = data.index(b"IDAT") + 40
    data[start : start + 64] = bytes(64)
    return bytes(data)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated_jpeg", "is truncated (no image data after the JPEG header)"),
        ("jpeg_without_end_marker", "truncated (no JPEG end marker FF D9)"),
        ("truncated_png", "truncated (no PNG end chunk IEND)"),
        ("truncated_gif", "truncated (no GIF trailer"),
        ("text_named_jpg", "is a text file, not an image"),
        ("zero_bytes", "is empty (0 bytes)"),
        ("tiff", "is a TIFF image, which TensorFlow cannot decode"),
        ("bmp_1bit", "is a 1-bit BMP"),
        ("bmp_trailing_bytes", "2 bytes after its pixel data"),
        ("jpeg_12bit", "12-bit JPEG"),
    ],
)
def test_quick_scan_says_what_is_wrong(tmp_path, kind, reason):
    path = write(tmp_path / "cat" / "x.jpg", BAD[kind])
    assert reason in check_file(path).problem


def test_quick_scan_judges_a_file_by_content_not_extension(tmp_path):
    path = write(tmp_path / "really_a_png.jpg", encode(noise(4, 4), "PNG"))
    check = check_file(path)
    assert (check.kind, check.problem) == ("png", None)


def test_quick_scan_accepts_a_jpeg_with_a_long_trailer_after_its_end(tmp_path):
    data = encode(noise(128, 128), "JPEG") + bytes(range(256)) * 80  # 20 KB of camera data
    assert check_file(write(tmp_path / "x.jpg", data)).problem is None


def test_quick_scan_reports_a_missing_file_instead_of_raising(tmp_path):
    assert "cannot be read" in check_file(str(tmp_path / "gone.jpg")).problem


def test_quick_scan_of_many_files_reports_bad_ones_in_listing_order(tmp_path):
    paths = class_tree(tmp_path, {"a": 300, "b": 300}, size=4)
    for i in (5, 299, 451):
        write(paths[i], BAD["truncated_png"])
    assert [b.path for b in quick_scan(paths)] == [paths[5], paths[299], paths[451]]


def test_quick_scan_cannot_see_damage_in_the_middle_of_a_file(tmp_path):
    assert check_file(write(tmp_path / "x.png", corrupt_png())).problem is None


def test_full_scan_finds_files_tensorflow_cannot_decode(tmp_path):
    from distxfer.data.fullscan import find_undecodable

    good = write(tmp_path / "good.png", encode(noise(8, 8), "PNG"))
    damaged = write(tmp_path / "damaged.png", corrupt_png())
    text = write(tmp_path / "text.jpg", BAD["text_named_jpg"])
    bad = find_undecodable([good, damaged, text])
    assert [b.path for b in bad] == [damaged, text]
    assert all("cannot be decoded by TensorFlow" in b.reason for b in bad)


@pytest.mark.slow
def test_scan_full_drops_damage_the_quick_scan_misses(tmp_path):
    paths = class_tree(tmp_path, {"a": 3, "b": 3})
    write(paths[1], corrupt_png())
    cfg = DataConfig(train_dir=str(tmp_path), scan="full", bad_files="skip")
    splits = load_splits(cfg, seed=0)
    assert [b.path for b in splits.skipped] == [paths[1]]
    assert paths[1] not in splits.train.paths and len(splits.train) == 5


def test_bad_files_error_stops_the_run_naming_the_file_and_the_fix(tmp_path):
    paths = class_tree(tmp_path, {"a": 3, "b": 3})
    write(paths[4], b"")
    with pytest.raises(DataError) as error:
        load_splits(DataConfig(train_dir=str(tmp_path)), seed=0)
    message = str(error.value)
    assert paths[4] in message and "is empty" in message and "data.bad_files=skip" in message


def test_bad_files_skip_drops_counts_and_logs_them(tmp_path, caplog):
    paths = class_tree(tmp_path, {"a": 4, "b": 4})
    for i in (0, 6):
        write(paths[i], BAD["truncated_jpeg"])
    cfg = DataConfig(train_dir=str(tmp_path), val_split=0.25, bad_files="skip")
    with caplog.at_level(logging.WARNING, logger="distxfer.data"):
        splits = load_splits(cfg, seed=0)
    assert [b.path for b in splits.skipped] == [paths[0], paths[6]]
    kept = set(splits.train.paths) | set(splits.val.paths)
    assert kept == set(paths) - {paths[0], paths[6]}
    assert "2 image file(s) cannot be decoded" in caplog.text and paths[0] in caplog.text


def test_skipping_every_training_image_of_a_class_is_an_error(tmp_path):
    paths = class_tree(tmp_path, {"a": 2, "b": 2})
    for path in paths[2:]:
        write(path, b"")
    with pytest.raises(DataError, match="every training image of class.* b is bad"):
        load_splits(DataConfig(train_dir=str(tmp_path), bad_files="skip"), seed=0)


def test_all_files_bad_is_an_error(tmp_path):
    for path in class_tree(tmp_path, {"a": 2, "b": 2}):
        write(path, b"")
    with pytest.raises(DataError, match="every image of the train split is bad"):
        load_splits(DataConfig(train_dir=str(tmp_path), bad_files="skip"), seed=0)


def test_bad_files_in_the_validation_folder_are_found_too(tmp_path):
    class_tree(tmp_path / "train", {"a": 2, "b": 2})
    for bad in class_tree(tmp_path / "val", {"a": 1, "b": 2})[:1]:
        write(bad, b"")  # the validation folder's only image of class a
    cfg = DataConfig(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "val"))
    with pytest.raises(DataError, match="is empty"):
        load_splits(cfg, seed=0)


def test_scan_off_leaves_bad_files_in(tmp_path):
    paths = class_tree(tmp_path, {"a": 2, "b": 2})
    write(paths[0], b"")
    splits = load_splits(DataConfig(train_dir=str(tmp_path), scan="off"), seed=0)
    assert splits.train.paths == tuple(paths) and splits.skipped == ()


def test_inspect_counts_classes_kinds_and_bad_files(tmp_path):
    class_tree(tmp_path, {"cat": 3, "dog": 2})
    write(tmp_path / "dog" / "extra.jpg", encode(noise(8, 8), "JPEG"))
    write(tmp_path / "dog" / "broken.jpg", BAD["truncated_jpeg"])
    (tmp_path / "empty").mkdir()
    report = inspect_folder(str(tmp_path))
    assert report.class_counts == {"cat": 3, "dog": 4, "empty": 0}
    assert report.kinds == {"png 8-bit rgb": 5, "jpeg": 1}
    assert [b.path for b in report.bad] == [str(tmp_path / "dog" / "broken.jpg")]


def test_rendered_report_shows_counts_empty_classes_and_bad_files_with_reasons(tmp_path):
    class_tree(tmp_path, {"cat": 3})
    write(tmp_path / "cat" / "broken.png", BAD["truncated_png"])
    (tmp_path / "empty").mkdir()
    text = render_report(inspect_folder(str(tmp_path)))
    assert "4 images in 2 classes" in text
    assert "empty: training would stop" in text
    assert "cat/broken.png is truncated (no PNG end chunk IEND)" in text
