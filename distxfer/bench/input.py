"""`distxfer bench input`: distxfer's input pipeline against the Keras loaders, side by side.

Loaders, each making batches of 224x224 images from the same JPEG folder in one process:
distxfer's `train_dataset`; `keras.utils.image_dataset_from_directory` with Keras's
augmentation layers mapped over it; tf_keras's `ImageDataGenerator.flow_from_directory` (the
seeds' loader; tf_keras and scipy are the benchmark-only extra `distxfer[bench]`, and its rows are
left out when they are not installed). Each is timed without augmentation, with a horizontal flip
only, and with the seeds' augmentation (rotation 20, shifts 0.2, shear 0.2, zoom 0.2, flip), on
a folder of small JPEGs; distxfer and `image_dataset_from_directory` also on large photos, with
the PSNR of each loader's pixels against an antialiased full decode. Targets: see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from distxfer.bench.common import header, interleaved, median, quiet_worker, table, write_json
from distxfer.bench.inputdata import write_jpeg_folder, write_photo_folder

SIZE = (224, 224)
SEEDS_AUGMENTATION = {
    "rotation": 20,
    "width_shift": 0.2,
    "height_shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
}
SETTINGS = {"none": {}, "flip": {"horizontal_flip": True}, "seeds": SEEDS_AUGMENTATION}
TARGETS = (  # (setting, folder, ours against, at least)
    ("none", "jpegs", "keras", 1.2),
    ("seeds", "jpegs", "idg", 15.0),
    ("seeds", "jpegs", "keras", 5.0),
    ("none", "photos", "keras", 5.0),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=2000, help="small JPEGs to generate")
    parser.add_argument("--image-size", type=int, default=320, help="of the small JPEGs")
    parser.add_argument(
        "--photos", type=int, default=2000, help="12-megapixel JPEGs (6 drawn, the rest hard links)"
    )
    parser.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--data-dir", help="keep the generated folders here (default: temporary)")
    parser.add_argument("--json", default="runs/bench/input.json", help="results file")


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = header("input", {k: v for k, v in vars(args).items() if k != "func"})
    quiet_worker()
    work = args.data_dir or tempfile.mkdtemp(prefix="distxfer-bench-input-")
    try:
        jpegs, photos = os.path.join(work, "jpegs"), os.path.join(work, "photos")
        started = time.perf_counter()
        if not os.path.isdir(jpegs):
            write_jpeg_folder(jpegs, args.images, args.image_size)
        if args.photos and not os.path.isdir(photos):
            write_photo_folder(photos, args.photos)
        print(f"data ready in {time.perf_counter() - started:.0f} s ({work})", flush=True)
        return _measure_all(args, info, {"jpegs": jpegs, "photos": photos if args.photos else ""})
    finally:
        if not args.data_dir:
            shutil.rmtree(work, ignore_errors=True)


def _measure_all(args: argparse.Namespace, info: dict, folders: dict[str, str]) -> dict:
    loaders = {"ours": ours, "keras": keras_loader, "idg": idg_loader}
    if not _has_tf_keras():
        print("tf_keras or scipy is not installed: the ImageDataGenerator rows are left out")
        loaders.pop("idg")
    cells: dict[str, Callable[[], float]] = {}
    for setting in SETTINGS:
        for name, loader in loaders.items():
            cells[f"{name}/{setting}/jpegs"] = _timer(loader, folders["jpegs"], setting, 32, args)
    if folders["photos"]:
        photo_loaders = {"ours": ours, "keras": keras_loader, "ours-cached": ours_cached}
        for name, loader in photo_loaders.items():
            cells[f"{name}/none/photos"] = _timer(loader, folders["photos"], "none", 8, args)
        loaders = {**loaders, "ours-cached": ours_cached}
    samples = interleaved(cells, args.repeats)
    mid = {key: median(values) for key, values in samples.items()}
    rows = []
    for folder in ("jpegs", "photos"):
        for setting in SETTINGS:
            row = [folder, setting] + [mid.get(f"{n}/{setting}/{folder}") for n in loaders]
            if any(v is not None for v in row[2:]):
                rows.append(["-" if v is None else v for v in row])
    print(table(["folder", "augmentation", *(f"{n} (img/s)" for n in loaders)], rows))
    targets = []
    for setting, folder, against, need in TARGETS:
        ours_key, other_key = f"ours/{setting}/{folder}", f"{against}/{setting}/{folder}"
        if ours_key in mid and other_key in mid:
            ratio = mid[ours_key] / mid[other_key]
            targets.append(
                [f"{setting} on {folder}, against {against}", ratio, need, ratio >= need]
            )
    print(table(["target", "ratio", "at least", "met"], targets))
    quality = photo_quality(folders["photos"]) if folders["photos"] else {}
    for name, value in quality.items():
        print(f"PSNR against an antialiased full decode, {name}: {value:.1f} dB")
    results = {"medians": mid, "samples": samples, "targets": targets, "psnr_db": quality}
    write_json(args.json, info, results)
    return results


def _timer(loader: Callable, root: str, setting: str, batch: int, args: argparse.Namespace):
    def measure() -> float:
        batches = loader(root, SETTINGS[setting], batch)
        for _ in range(2):  # start-up and the first batches' tracing are not timed
            next(batches)
        started = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        return args.batches * batch / (time.perf_counter() - started)

    return measure


def ours(root: str, augment: dict, batch: int, cache: str = "none") -> Iterator[Any]:
    """distxfer's training pipeline: every epoch of a folder split, in order."""
    from distxfer.config.schema import AugmentConfig, DataConfig
    from distxfer.data.layout import Batching
    from distxfer.data.load import load_splits
    from distxfer.data.pipeline import train_dataset

    cfg = DataConfig(train_dir=root, image_size=list(SIZE), scan="off", cache=cache)
    cfg.augment = AugmentConfig(**augment)
    split = load_splits(cfg, 0).train
    epoch = 0
    while True:
        dataset, _ = train_dataset(split, Batching(batch, 1, 1), cfg=cfg, seed=0, epoch=epoch)
        yield from iter(dataset)
        epoch += 1


def ours_cached(root: str, augment: dict, batch: int) -> Iterator[Any]:
    """distxfer with `data.cache: memory`, from the second epoch on (every file decoded once)."""
    from distxfer.data.cache import clear_loaded

    clear_loaded()
    batches = ours(root, augment, batch, cache="memory")
    next(batches)  # decodes every file into the cache
    return batches


def keras_loader(root: str, augment: dict, batch: int) -> Iterator[Any]:
    """`image_dataset_from_directory`, with Keras's augmentation layers for `augment`."""
    import keras
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # "Found N files belonging to ..."
        dataset = keras.utils.image_dataset_from_directory(
            root, image_size=SIZE, batch_size=batch, shuffle=True, seed=0
        )
    layers = []
    if augment.get("rotation"):
        layers.append(keras.layers.RandomRotation(augment["rotation"] / 360, fill_mode="nearest"))
    if augment.get("width_shift"):
        shift = keras.layers.RandomTranslation(
            augment["height_shift"], augment["width_shift"], fill_mode="nearest"
        )
        layers.append(shift)
    if augment.get("zoom"):
        layers.append(keras.layers.RandomZoom(augment["zoom"], fill_mode="nearest"))
    if augment.get("horizontal_flip"):
        layers.append(keras.layers.RandomFlip("horizontal"))
    # A shear of 0.2 degrees changes nothing visible; Keras's RandomShear is left out, which
    # only makes this loader faster.
    if layers:
        model = keras.Sequential(layers)
        dataset = dataset.map(
            lambda x, y: (model(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    while True:
        yield from iter(dataset)


def idg_loader(root: str, augment: dict, batch: int) -> Iterator[Any]:
    """tf_keras's `ImageDataGenerator.flow_from_directory` with the same knobs."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    names = {
        "rotation": "rotation_range",
        "width_shift": "width_shift_range",
        "height_shift": "height_shift_range",
        "shear": "shear_range",
        "zoom": "zoom_range",
        "horizontal_flip": "horizontal_flip",
    }
    generator = ImageDataGenerator(**{names[k]: v for k, v in augment.items()})
    with contextlib.redirect_stdout(io.StringIO()):
        flow = generator.flow_from_directory(
            root, target_size=SIZE, batch_size=batch, class_mode="sparse", seed=0
        )
    while True:
        yield next(flow)


def photo_quality(root: str, count: int = 6) -> dict[str, float]:
    """Mean PSNR of distxfer's and `image_dataset_from_directory`'s 224x224 pixels of the first
    photos against an antialiased resize of the full decode."""
    import numpy as np
    import tensorflow as tf

    from distxfer.data.decode import decode_resized

    paths = sorted(
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".jpg")
    )[:count]
    scores: dict[str, list[float]] = {"distxfer": [], "image_dataset_from_directory": []}
    for path in paths:
        data = tf.io.read_file(path)
        full = tf.io.decode_jpeg(data, channels=3)
        reference = tf.image.resize(full, SIZE, antialias=True).numpy()
        candidates = {
            "distxfer": decode_resized(data, SIZE, 3).numpy(),
            "image_dataset_from_directory": tf.image.resize(full, SIZE).numpy(),  # its resize
        }
        for name, pixels in candidates.items():
            error = np.mean((np.asarray(pixels, np.float64) - reference) ** 2)
            scores[name].append(10 * np.log10(255.0**2 / max(error, 1e-12)))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def _has_tf_keras() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tf_keras", "scipy"))
