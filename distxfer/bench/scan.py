"""`distxfer bench scan`: listing, scanning and restarting on a tree of 1.28 million files.

The tree is ImageNet's shape (1,000 class folders of 1,280 files) made of hard links to a few
small JPEGs, so it costs inodes, not disk. Three measurements, each in a fresh process: the
first listing with an empty scan cache, the same listing again (every verdict cached), and a
restart of training up to its first step (interpreter start, listing, engine, model, input
pipeline, one step), with the peak memory of the listing. Targets: the cached restart reaches
its first step in under 30 s; rank 0's memory for the listing stays under 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distxfer.bench.common import child_env, header, table, write_json
from distxfer.bench.inputdata import picture

RESTART_TARGET_S = 30.0
MEMORY_TARGET_GB = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=1_280_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--work-dir", help="where the tree is made (default: a temporary folder)")
    parser.add_argument("--json", default="runs/bench/scan.json", help="results file")


def run(args: argparse.Namespace) -> dict:
    info = header("scan", {k: v for k, v in vars(args).items() if k != "func"})
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="distxfer-bench-scan-"))
    try:
        started = time.perf_counter()
        root = make_tree(work / "tree", args.files, args.classes)
        print(f"made {args.files:,} files in {time.perf_counter() - started:.0f} s", flush=True)
        env = child_env(DISTXFER_CACHE=str(work / "cache"))
        cold = _child(["listing", str(root)], env)
        cached = _child(["listing", str(root)], env)
        restart = _child(["restart", str(root), str(work / "run")], env)
        imports = _child(["imports"], env)
    finally:
        print("removing the tree", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ["first listing (empty scan cache)", cold["seconds"], cold["listing_rss_gb"]],
        ["listing again (every verdict cached)", cached["seconds"], cached["listing_rss_gb"]],
        ["restart to the first training step", restart["seconds"], restart["listing_rss_gb"]],
        ["of which: starting Python and importing TensorFlow", imports["seconds"], 0.0],
    ]
    print(table(["measurement", "seconds", "listing memory (GB)"], rows))
    targets = [
        [
            "cached restart to first step < 30 s",
            restart["seconds"],
            restart["seconds"] < RESTART_TARGET_S,
        ],
        [
            "rank 0's listing memory < 1 GB",
            max(r[2] for r in rows),
            max(r[2] for r in rows) < MEMORY_TARGET_GB,
        ],
    ]
    print(table(["target", "measured", "met"], targets))
    print(f"second epoch's dataset built in {restart['second_epoch_dataset_s']:.2f} s")
    print(table(["restart, stage by stage", "seconds"], list(restart["stages"].items())))
    results = {"cold": cold, "cached": cached, "restart": restart, "imports": imports}
    results["targets"] = targets
    write_json(args.json, info, results)
    return results


def make_tree(root: Path, files: int, classes: int) -> Path:
    """`files` hard links to a few small JPEGs in `classes` class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = []
    (root / ".sources").mkdir(parents=True, exist_ok=True)
    for i in range(max(8, files // 30_000 + 1)):  # a file system allows ~65,000 links a file
        path = root / ".sources" / f"{i}.jpg"
        Image.fromarray(picture(rng, 48, 48, stripes=False)).save(path, quality=90)
        sources.append(str(path))
    per_class = -(-files // classes)
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(exist_ok=True)
        for i in range(min(per_class, files - c * per_class)):
            os.link(sources[i % len(sources)], folder / f"n{c:08d}_{i}.JPEG")
    return root


def _child(argv: list[str], env: dict[str, str]) -> dict:
    """Run this module's worker in a fresh process; its result, timed from before it starts."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        started = time.time()
        subprocess.run(
            [sys.executable, "-m", "distxfer.bench.scan", *argv, result.name],
            env=env,
            check=True,
        )
        found = json.loads(Path(result.name).read_text())
    found["seconds"] = found.pop("finished") - started
    marks = found.pop("marks", None)
    if marks:  # each stage's seconds, from the end of the one before (the first: the start)
        ends = [started, *marks.values()]
        found["stages"] = {name: ends[i + 1] - ends[i] for i, name in enumerate(marks)}
    return found


def _listing_worker(root: str, out: str) -> None:
    from distxfer.config.schema import DataConfig
    from distxfer.data.load import load_splits

    before = _rss_gb()
    splits = load_splits(DataConfig(train_dir=root, val_split=0.01), seed=0)
    finished = time.time()
    peak = _peak_rss_gb()
    assert splits.train is not None
    _write(out, finished=finished, listing_rss_gb=peak - before, train=len(splits.train))


def _restart_worker(root: str, run_dir: str, out: str) -> None:
    """What `distxfer train` does up to the first step, with a hook that notes its time."""
    from distxfer.config import Config, DataConfig, ModelConfig, OutputConfig, PhaseConfig
    from distxfer.config.resolve import resolve
    from distxfer.data.sharedlisting import agree_on_splits, load_splits_once
    from distxfer.engines import create_engine, current_launch

    config = Config(
        data=DataConfig(train_dir=root, image_size=[32, 32], batch_size=32, val_split=0.01),
        model=ModelConfig(backbone="mlp", weights=None),
        phases=[PhaseConfig(name="only", epochs=1, trainable="all")],
        output=OutputConfig(run_dir=run_dir, tensorboard=False, image_grid=0),
    )
    resolve(config)
    config.check()
    marks = {"interpreter, distxfer, config": time.time()}
    before = _rss_gb()
    launch = current_launch()
    splits = load_splits_once(config.data, config.seed, rank=launch.rank, size=launch.size)
    listing_peak = _peak_rss_gb() - before
    marks["listing (scan cache filled)"] = time.time()
    engine = create_engine(config.engine)
    marks["importing TensorFlow, the engine"] = time.time()
    splits = agree_on_splits(engine, splits, config.data, config.seed)
    marks["agreeing on the splits"] = time.time()
    from distxfer.train.hooks import Hook
    from distxfer.train.loop import Trainer

    class FirstStep(Hook):
        def on_epoch_begin(self, trainer: Trainer, epoch: int, steps: int, start_step: int) -> None:
            marks["checkpoints, the first epoch's dataset"] = time.time()

        def on_steps(self, trainer: Trainer, step: int, steps: int) -> None:
            marks[f"the first {step} step(s): tracing, the first batches"] = finished = time.time()
            started = time.perf_counter()
            trainer.epochs.dataset(1)
            second = time.perf_counter() - started
            _write(
                out,
                finished=finished,
                listing_rss_gb=listing_peak,
                second_epoch_dataset_s=second,
                marks=marks,
            )
            os._exit(0)

    trainer = Trainer(config, engine, splits, Path(run_dir), [FirstStep()])
    marks["the model, optimizer state, evaluator"] = time.time()
    trainer.fit()


def _imports_worker(out: str) -> None:
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    _write(out, finished=time.time())


def _rss_gb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _write(out: str, **values: float | dict[str, float]) -> None:
    Path(out).write_text(json.dumps(values))


if __name__ == "__main__":
    workers = {"listing": _listing_worker, "restart": _restart_worker, "imports": _imports_worker}
    workers[sys.argv[1]](*sys.argv[2:])
