"""Bad input, for real: a training folder holding every odd and broken kind of file, folders of
odd shapes, an image damaged where the quick scan cannot see, configs and models that must not
run code. Each is read correctly, handled by `data.bad_files`, or stopped with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli, tiny_overrides, write_tiny_images
from imagefiles import bad_images, class_tree, encode, gradient, noise, odd_images, write
from PIL import Image
from test_data_scan import corrupt_png

from distxfer.config import DataConfig, load_config
from distxfer.data import load_splits
from distxfer.errors import ConfigError, DataError

CONFIG = ("-c", "configs/mnist_mlp.yaml")
BAD = bad_images()
ODD = odd_images()


def zoo(root: Path) -> dict[str, str]:
    """Three classes (one named with a space and non-ASCII letters), a few plain images each,
    and one file of every troublesome kind; name -> path of each odd or bad file."""
    class_tree(root, {"cat": 6, "dog": 6, "café au lait": 6}, size=16)
    made = {
        "truncated jpeg": write(root / "cat" / "truncated.jpg", BAD["truncated_jpeg"]),
        "text named .jpg": write(root / "cat" / "notes.jpg", BAD["text_named_jpg"]),
        "zero bytes": write(root / "dog" / "empty.png", BAD["zero_bytes"]),
        "cmyk jpeg": write(root / "cat" / "cmyk.jpg", ODD["jpeg_cmyk"][0]),
        "16-bit png": write(root / "dog" / "deep.png", ODD["png_16bit_rgb"][0]),
        "rgba png": write(root / "dog" / "alpha.png", ODD["png_rgba"][0]),
        "grayscale": write(root / "café au lait" / "gray.png", ODD["png_gray"][0]),
        "animated gif": write(root / "café au lait" / "moving.gif", ODD["gif_animated"][0]),
        "upper-case extension": write(root / "cat" / "LOUD.JPG", encode(gradient(9, 9), "JPEG")),
        "very large": write(
            root / "dog" / "huge.png", encode(Image.new("RGB", (8000, 8000), (20, 200, 30)), "PNG")
        ),
        "damaged in the middle": write(root / "café au lait" / "damaged.png", corrupt_png()),
    }
    write(root / "cat" / ".hidden.jpg", encode(noise(8, 8), "JPEG"))  # not data
    write(root / "dog" / "._resource_fork.png", b"\0\5\26\7")  # macOS litter: not data
    os.symlink(root / "dog", root / "dog" / "loop")  # a link back up the tree
    return made


def test_every_odd_file_kind_is_read_or_handled_by_the_bad_file_policy(tmp_path):
    made = zoo(tmp_path)
    cfg = DataConfig(train_dir=str(tmp_path), bad_files="skip", follow_links=True)
    splits = load_splits(cfg, seed=0)
    skipped = {b.path for b in splits.skipped}
    assert skipped == {made["truncated jpeg"], made["text named .jpg"], made["zero bytes"]}
    kept = set(splits.train.paths)
    readable = set(made.values()) - skipped
    assert readable <= kept  # damaged in the middle too: only decoding can tell (see below)
    assert not [p for p in kept if os.path.basename(p).startswith(".")]
    assert len(kept) == 18 + len(readable)  # the loop listed nothing twice
    with pytest.raises(DataError) as error:
        load_splits(DataConfig(train_dir=str(tmp_path), follow_links=True), seed=0)
    assert "3 image file(s) cannot be decoded, e.g. " in str(error.value)


def test_the_bad_files_error_is_one_self_contained_line_with_the_list_after_it(tmp_path):
    made = zoo(tmp_path)
    result = run_cli(
        "train", *CONFIG, f"data.train_dir={tmp_path}", "data.val_split=0", check=False
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()  # log lines come before the error
    first, *rest = lines[[i for i, x in enumerate(lines) if "distxfer: error:" in x][0] :]
    assert first.startswith("distxfer: error: 3 image file(s) cannot be decoded, e.g. ")
    assert first.endswith(
        "(and 2 more); fix or remove them, or set data.bad_files=skip to train without them"
    )
    listed = {made[k] for k in ("truncated jpeg", "text named .jpg", "zero bytes")}
    assert {line.split(" ")[2] for line in rest} == listed and len(rest) == 3
    assert all(line.startswith("  /") for line in rest)


@pytest.mark.slow
def test_training_on_every_odd_kind_finishes_and_names_the_file_it_could_not_decode(tmp_path):
    made = zoo(tmp_path / "train")
    write_tiny_images(tmp_path / "val", 2)
    run_dir = tmp_path / "run"
    data = {"train": tmp_path / "train", "val": None, "test": None}
    args = tiny_overrides(
        data,
        run_dir,
        "data.val_dir=null",
        "data.test_dir=null",
        "data.bad_files=skip",
        "data.follow_links=true",
        "phases.0.epochs=1",
    )
    run_cli("train", *CONFIG, *args)
    log = (run_dir / "train.log").read_text()
    damaged = made["damaged in the middle"]
    assert f"left out (data.bad_files=skip): {damaged} cannot be decoded by TensorFlow" in log
    assert "skipped 3 bad image files" in log
    classes = (run_dir / "classes.json").read_text()
    assert '"caf\\u00e9 au lait"' in classes  # non-ASCII class names survive (JSON escapes)


@pytest.mark.slow
def test_an_image_that_fails_to_decode_during_training_stops_the_run_naming_it(tiny_data, tmp_path):
    train = tmp_path / "train"
    write_tiny_images(train, 8)
    damaged = write(train / "red" / "damaged.png", corrupt_png())
    args = tiny_overrides({**tiny_data, "train": train}, tmp_path / "run", "phases.0.epochs=1")
    result = run_cli("train", *CONFIG, *args, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if "distxfer: error: " in x]
    assert f"1 image(s) could not be decoded during training, e.g. {damaged} cannot be" in line
    assert "data.bad_files=skip" in line and "data.scan=full" in line
    assert "Traceback" not in result.stderr


def test_a_single_class_is_an_error_before_anything_starts(tmp_path):
    class_tree(tmp_path, {"only": 3})
    with pytest.raises(DataError, match="has one class \\('only'\\); a classifier needs at least"):
        load_splits(DataConfig(train_dir=str(tmp_path)), seed=0)


# -- the pipeline keeps its contract when an image fails ------------------------------------------


@pytest.mark.slow
def test_an_image_that_fails_to_decode_is_a_weight_zero_entry_in_its_place(tmp_path):
    from distxfer.data import failures
    from distxfer.data.layout import Batching
    from distxfer.data.pipeline import train_dataset

    paths = class_tree(tmp_path, {"a": 5, "b": 6}, size=6)
    cfg = DataConfig(train_dir=str(tmp_path), image_size=[4, 4])
    split = load_splits(cfg, seed=0).train

    def epoch(pipeline: int) -> list[dict]:
        ds, _ = train_dataset(split, Batching(2, 1, 2, pipeline), cfg=cfg, seed=1, epoch=0)
        return list(ds.as_numpy_iterator())

    clean = [epoch(p) for p in (0, 1)]
    write(paths[3], corrupt_png())  # after listing: only decoding can find it
    failures.take()
    damaged = [epoch(p) for p in (0, 1)]
    assert [len(b) for b in damaged] == [len(b) for b in clean]  # the same steps everywhere
    for before, after in zip(clean, damaged):
        for x, y in zip(before, after):
            assert np.array_equal(x["id"], y["id"]) and np.array_equal(x["label"], y["label"])
            hit = x["id"] == 3
            assert np.array_equal(y["weight"], np.where(hit, 0.0, x["weight"]))
            assert not y["image"][hit].any()
            assert np.array_equal(x["image"][~hit], y["image"][~hit])
    assert failures.take() == [paths[3]]


def test_fewer_images_than_one_global_batch_make_one_padded_step_on_every_worker(tmp_path):
    from distxfer.data.layout import Batching

    class_tree(tmp_path, {"a": 2, "b": 1})
    split = load_splits(DataConfig(train_dir=str(tmp_path)), seed=0).train
    steps = {
        p: split.epoch_steps(Batching(4, 1, 2, p), seed=0, epoch=0, shuffle=True) for p in (0, 1)
    }
    assert steps == {0: 1, 1: 1}  # global batch 8 > 3 images: one step, the rest weight-0 padding


# -- 15. nothing runs code it was handed ----------------------------------------------------------


def test_a_config_with_a_python_tag_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(config)
    assert not marker.exists()


@pytest.mark.slow
def test_predict_refuses_a_keras_file_with_a_lambda_layer_unless_told_to_trust_it(tmp_path):
    marker = tmp_path / "lambda_ran"
    build = f"""
import json, keras
inputs = keras.Input((4, 4, 3), dtype="uint8")
touch = keras.layers.Lambda(lambda t: (open({str(marker)!r}, "w"), t)[1], output_shape=(4, 4, 3))
x = touch(inputs)
x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(x))
model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
model.save({str(tmp_path / "model.keras")!r})
json.dump({{"class_names": ["a", "b"], "image_size": [4, 4], "channels": 3}},
          open({str(tmp_path / "model.json")!r}, "w"))
"""
    subprocess.run([sys.executable, "-c", textwrap.dedent(build)], env=cli_env(), check=True)
    marker.unlink(missing_ok=True)  # building ran the lambda once
    images = tmp_path / "images"
    write(images / "one.png", encode(noise(4, 4), "PNG"))
    out = tmp_path / "out.csv"
    refused = run_cli(
        "predict", str(tmp_path / "model.keras"), str(images), "-o", str(out), check=False
    )
    assert refused.returncode == 2 and not marker.exists() and not out.exists()
    (line,) = [x for x in refused.stderr.splitlines() if "distxfer: error: " in x]
    assert "holds a Lambda layer or other Python code" in line and "--trust-model-code" in line
    run_cli(
        "predict", str(tmp_path / "model.keras"), str(images), "-o", str(out), "--trust-model-code"
    )
    assert out.read_text().count("\n") == 2 and marker.exists()
