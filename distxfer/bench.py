"""`distxfer bench`: images per second for 1 and 2 workers per engine, and weak-scaling efficiency.

Each measurement starts real worker processes the way users start them (horovodrun, TF_CONFIG
workers on loopback, one MirroredStrategy process over logical CPU devices), each with one
intra-op thread, and times the trainer's own compiled step (`TrainStep`) on the same model and
in-memory data: the engine and the step are measured, not the disk. Each worker is pinned to its
own core, so one worker really has one core and two workers have two. Weak scaling keeps the
per-worker batch fixed, so efficiency = throughput(2) / (2 x throughput(1)). Both numbers of a
pair come from the same run of this command, side by side.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from distxfer import launchers
from distxfer.engines import current_launch
from distxfer.launchers import ProcessSpec

WARMUP_STEPS = 5


def worker_main(argv: list[str] | None = None) -> None:
    """One worker of a measurement (run by `python -m distxfer.bench`)."""
    parser = argparse.ArgumentParser()
    for name, kind in (
        ("--engine", str),
        ("--steps", int),
        ("--batch-size", int),
        ("--image-size", int),
        ("--backbone", str),
        ("--cpu-replicas", int),
        ("--result", str),
        ("--pin", str),
        ("--trainable", str),
    ):
        parser.add_argument(
            name, type=kind, required=name not in ("--cpu-replicas", "--pin", "--trainable")
        )
    args = parser.parse_args(argv)
    if args.pin:  # before TensorFlow starts threads: one core per worker
        _pin(args.pin)
    # This process measures; TensorFlow is imported only now, once it is pinned.
    from distxfer.logs import quiet_tensorflow

    quiet_tensorflow()
    from distxfer.config import EngineConfig, ModelConfig, PhaseConfig
    from distxfer.engines import create_engine

    engine = create_engine(
        EngineConfig(name=args.engine, threads=1, cpu_replicas=args.cpu_replicas or 0)
    )
    import keras
    import numpy as np
    import tensorflow as tf

    from distxfer.models import apply_phase, build_model
    from distxfer.train.steps import TrainStep

    size = (args.image_size, args.image_size)
    model_cfg = ModelConfig(
        backbone=args.backbone, weights=None, backbone_args=small_backbone_args(args.backbone)
    )
    with engine.scope():
        keras.utils.set_random_seed(0)
        model = build_model(model_cfg, 10, size, 3)
        apply_phase(model, PhaseConfig(trainable=args.trainable or "all"))
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)
    global_batch = args.batch_size * engine.num_replicas
    steps = TrainStep(model, optimizer, engine, global_batch=global_batch, num_classes=10)
    rng = np.random.default_rng(engine.rank)
    batches = {
        "image": rng.integers(0, 256, (8 * args.batch_size, *size, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, 8 * args.batch_size).astype(np.int32),
        "weight": np.ones(8 * args.batch_size, np.float32),
        "id": np.arange(8 * args.batch_size, dtype=np.int64),
    }
    dataset = tf.data.Dataset.from_tensor_slices(batches).batch(
        args.batch_size, drop_remainder=True
    )
    dataset = dataset.cache().repeat().prefetch(tf.data.AUTOTUNE)
    iterator = iter(engine.distribute(dataset))
    steps.run(iterator, WARMUP_STEPS)
    engine.all_sum([steps.stats.numpy()])  # everyone finished warming up
    started = time.perf_counter()
    steps.run(iterator, args.steps)
    engine.all_sum([steps.stats.numpy()])  # everyone finished the timed steps
    elapsed = time.perf_counter() - started
    if engine.is_chief:
        Path(args.result).write_text(
            json.dumps(
                {
                    "images_per_second": global_batch * args.steps / elapsed,
                    "seconds": elapsed,
                    "replicas": engine.num_replicas,
                }
            )
        )
    engine.shutdown()


def _pin(spec: str) -> None:
    """Pin this process to its cores: `spec` lists each rank's cores ("0/1"), or one set ("0,1")."""
    per_rank = spec.split("/")
    cores = per_rank[current_launch().rank % len(per_rank)]
    os.sched_setaffinity(0, {int(c) for c in cores.split(",")})


def small_backbone_args(backbone: str) -> dict:
    """The benchmarks' MobileNets are the small ones (alpha 0.35); others as Keras builds them."""
    return (
        {"alpha": 0.35} if backbone.lower().replace("_", "") in ("mobilenetv2", "mobilenet") else {}
    )


def _processes(engine: str, workers: int, worker_args: list[str], result: str) -> list[ProcessSpec]:
    """Processes for one measurement; `independent` is 2 single workers that never communicate."""
    python = [sys.executable, "-m", "distxfer.bench"]
    cores = os.cpu_count() or 1
    if engine == "independent":
        return [
            ProcessSpec(
                [
                    *python,
                    *worker_args,
                    "--engine",
                    "single",
                    "--pin",
                    str(i % cores),
                    "--result",
                    f"{result}.{i}",
                ]
            )
            for i in range(workers)
        ]
    pin = ("," if engine == "mirrored" else "/").join(str(c % cores) for c in range(workers))
    args = [*worker_args, "--result", result, "--pin", pin]
    if engine == "horovod":
        program = [*python, "--engine", "horovod", *args]
        return launchers.horovodrun(program, n=workers, controller="gloo")
    if engine == "multiworker":
        return launchers.tf_config_workers([*python, "--engine", "multiworker", *args], n=workers)
    if engine == "mirrored":
        one_or_mirrored = "mirrored" if workers > 1 else "single"
        program = [*python, "--engine", one_or_mirrored, "--cpu-replicas", str(workers), *args]
        return launchers.mirrored(program)
    return [ProcessSpec([*python, "--engine", "single", *args])]


def measure(engine: str, workers: int, worker_args: list[str]) -> float:
    """Global images per second of one measurement (summed over independent workers)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        processes = _processes(engine, workers, worker_args, result)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
        output = io.StringIO()
        status = launchers.supervise(processes, env=env, output=output)
        files = [f"{result}.{i}" for i in range(workers)] if engine == "independent" else [result]
        if status or not all(os.path.exists(f) for f in files):
            raise RuntimeError(
                f"{engine} with {workers} worker(s) failed (status {status}):\n"
                + output.getvalue()[-6000:]
            )
        return sum(json.loads(Path(f).read_text())["images_per_second"] for f in files)


def run_engine_benchmark(
    *,
    engines: list[str],
    steps: int,
    batch_size: int,
    image_size: int,
    backbone: str,
    trainable: str = "all",
    repeats: int = 3,
    output: str | None = None,
) -> list[dict]:
    """Measure every configuration `repeats` times, interleaved, and report medians side by side."""
    worker_args = [
        "--steps",
        str(steps),
        "--batch-size",
        str(batch_size),
        "--image-size",
        str(image_size),
        "--backbone",
        backbone,
        "--trainable",
        trainable,
    ]
    plan = [("single", 1), ("independent", 2)] + [
        (e, n) for e in engines if e != "single" for n in (1, 2)
    ]
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in plan}
    for _ in range(repeats):
        for engine, workers in plan:
            samples[(engine, workers)].append(measure(engine, workers, worker_args))
    median = {key: sorted(values)[len(values) // 2] for key, values in samples.items()}
    ceiling = median[("independent", 2)] / (2 * median[("single", 1)])
    print(
        f"hardware ceiling: 2 independent workers reach {ceiling:.3f} of 2 x one worker", flush=True
    )
    rows = []
    for engine in (e for e in engines if e != "single"):
        one, two = median[(engine, 1)], median[(engine, 2)]
        efficiency = two / (2 * one)
        rows.append(
            {
                "engine": engine,
                "one": one,
                "two": two,
                "efficiency": efficiency,
                "of_ceiling": efficiency / ceiling,
            }
        )
        print(
            f"{engine:<12} 1 worker {one:8.1f} img/s   2 workers {two:8.1f} img/s"
            f"   weak-scaling efficiency {efficiency:.3f}"
            f"  ({efficiency / ceiling:.3f} of the hardware ceiling)",
            flush=True,
        )
    if output:
        _append_markdown(
            Path(output),
            rows,
            ceiling,
            f"{backbone} (trainable: {trainable})",
            image_size,
            batch_size,
            steps,
            repeats,
        )
    return rows


def _append_markdown(
    path: Path,
    rows: list[dict],
    ceiling: float,
    backbone: str,
    image_size: int,
    batch: int,
    steps: int,
    repeats: int,
) -> None:
    lines = [
        f"\n### {time.strftime('%Y-%m-%d')}: {backbone} {image_size}x{image_size},"
        f" batch {batch} per worker, {steps} timed steps, median of {repeats},"
        f" one core and one thread per worker, {os.cpu_count()} cores\n",
        "Hardware ceiling (2 workers that never communicate, against 2 x one worker):"
        f" {ceiling:.3f}\n",
        "| engine | 1 worker (img/s) | 2 workers (img/s) | weak-scaling efficiency"
        " | of the ceiling |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['engine']} | {r['one']:.1f} | {r['two']:.1f} | {r['efficiency']:.3f}"
        f" | {r['of_ceiling']:.3f} |"
        for r in rows
    ]
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    worker_main()
