"""`distxfer bench feature-cache`: a frozen-backbone phase with and without the feature cache.

Two `distxfer train` runs of the same config, one head phase of 10 epochs on a frozen backbone
(no augmentation), alternated `--repeats` times: one trains on images (`data.feature_cache:
false`), the other on the backbone's features computed once. Reports the training seconds each
run records in its checkpoint (the phase, with its validation every epoch and the feature pass,
without interpreter and model start-up), their ratio, and both validation accuracies. Target:
at least 5x faster, validation accuracy within 1 point.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from distxfer.bench.common import child_env, header, interleaved, median, table, write_json
from distxfer.bench.inputdata import CLASSES, picture

SPEEDUP_TARGET = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=1000, help="training images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; medians are reported")
    parser.add_argument("--json", default="runs/bench/feature-cache.json", help="results file")


def run(args: argparse.Namespace) -> dict:
    info = header("feature-cache", {k: v for k, v in vars(args).items() if k != "func"})
    work = Path(tempfile.mkdtemp(prefix="distxfer-bench-features-"))
    try:
        write_tinted(work / "train", args.images, args.image_size, seed=1)
        write_tinted(work / "val", max(CLASSES * 25, args.images // 5), args.image_size, seed=2)
        results: dict[str, list[dict]] = {"images": [], "features": []}
        runs = iter(range(10**6))

        def one(cache: bool) -> float:
            found = _train(work, args, cache, f"run{next(runs)}")
            results["features" if cache else "images"].append(found)
            return found["train_seconds"]

        samples = interleaved(
            {"images": lambda: one(False), "features": lambda: one(True)}, args.repeats
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = {k: median(v) for k, v in samples.items()}
    accuracy = {k: median([r["val_accuracy"] for r in v]) for k, v in results.items()}
    speedup = seconds["images"] / seconds["features"]
    gap = abs(accuracy["images"] - accuracy["features"])
    print(
        table(
            ["head phase on", "training seconds", "validation accuracy"],
            [[k, seconds[k], accuracy[k]] for k in ("images", "features")],
        )
    )
    targets = [
        ["speed-up of the feature cache", speedup, f">= {SPEEDUP_TARGET}", speedup >= 5.0],
        ["validation accuracy gap (points)", 100 * gap, "<= 1", gap <= 0.01],
    ]
    print(table(["target", "measured", "needed", "met"], targets))
    out = {"seconds": seconds, "accuracy": accuracy, "targets": targets, "runs": results}
    write_json(args.json, info, out)
    return out


def write_tinted(root: Path, count: int, size: int, *, seed: int) -> None:
    """Pictures whose class is a colour tint: learnable by a head on any backbone's features."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tints = np.array([[60, 0, 0], [0, 60, 0], [0, 0, 60], [40, 40, -40]], np.float32)
    for i in range(count):
        label = i % CLASSES
        image = picture(rng, size, size, stripes=False).astype(np.float32) * 0.8 + tints[label]
        path = root / f"class{label}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def _train(work: Path, args: argparse.Namespace, cache: bool, name: str) -> dict:
    """One `distxfer train` run; its training seconds and final validation accuracy."""
    run_dir = work / name
    overrides = [
        f"data.train_dir={work / 'train'}",
        f"data.val_dir={work / 'val'}",
        f"data.image_size=[{args.image_size}, {args.image_size}]",
        f"data.batch_size={args.batch_size}",
        f"data.feature_cache={'true' if cache else 'false'}",
        f"model.backbone={args.backbone}",
        "model.weights=null",
        f"phases=[{{name: head, epochs: {args.epochs}, trainable: head, learning_rate: 0.003}}]",
        f"output.run_dir={run_dir}",
        "output.tensorboard=false",
        "output.image_grid=0",
    ]
    env = child_env(DISTXFER_CACHE=str(work / f"cache-{name}"))  # nothing carried between runs
    config = work / "config.yaml"
    config.write_text("seed: 0\n")  # everything else is in the overrides
    subprocess.run(
        [sys.executable, "-m", "distxfer", "train", "-c", str(config), *overrides],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from distxfer.checkpoint import CheckpointStore

    store = CheckpointStore(
        run_dir / "checkpoints", keep=1, best_metric="val_accuracy", writer=False
    )
    snapshot = store.latest()
    assert snapshot is not None
    report = json.loads((run_dir / "eval" / "validation.json").read_text())
    return {"train_seconds": snapshot.state.train_seconds, "val_accuracy": _accuracy(report)}


def _accuracy(report: dict) -> float:
    metrics = report.get("metrics", report)
    return float(metrics["accuracy"])
