"""`distxfer bench engines`: images/s for 1 and 2 workers per engine, and weak-scaling efficiency.

Each measurement starts real worker processes the way users start them (horovodrun, TF_CONFIG
workers on loopback, one MirroredStrategy process over logical CPU devices), each with one
intra-op thread, and times the trainer's own compiled step (`TrainStep`) on the same model and
in-memory random data: the engine and the step are measured, not the disk. Each worker is pinned
to its own core, so one worker really has one core and two workers have two. Weak scaling keeps
the per-worker batch fixed, so efficiency = throughput(2) / (2 x throughput(1)). Both numbers of
a pair come from the same run of this command, side by side. `distxfer bench synthetic` uses the
same workers without pinning, on any backbone and worker count.
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
from typing import Any

from distxfer import launchers
from distxfer.bench.common import child_env, header, interleaved, median, table, write_json
from distxfer.engines import current_launch
from distxfer.launchers import ProcessSpec

WARMUP_STEPS = 5


def worker_main(argv: list[str] | None = None) -> None:
    """One worker of a measurement (run by `python -m distxfer.bench.engines`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--cpu-replicas", type=int, default=0)
    parser.add_argument("--pin", default="")
    parser.add_argument("--trainable", default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    if args.pin:  # before TensorFlow starts threads: one core per worker
        _pin(args.pin)
    # This process measures; TensorFlow is imported only now, once it is pinned.
    from distxfer.bench.common import quiet_worker

    quiet_worker()
    from distxfer.config import EngineConfig
    from distxfer.engines import create_engine

    engine = create_engine(
        EngineConfig(name=args.engine, threads=args.threads, cpu_replicas=args.cpu_replicas)
    )
    seconds, replicas = _time_steps(engine, args)
    if engine.is_chief:
        global_batch = args.batch_size * replicas
        Path(args.result).write_text(
            json.dumps(
                {
                    "images_per_second": global_batch * args.steps / seconds,
                    "seconds": seconds,
                    "replicas": replicas,
                }
            )
        )
    engine.shutdown()


def _time_steps(engine: Any, args: argparse.Namespace) -> tuple[float, int]:
    """Seconds for `args.steps` training steps after a warm-up, on every rank alike."""
    import keras
    import numpy as np
    import tensorflow as tf

    from distxfer.config import ModelConfig, PhaseConfig
    from distxfer.models import apply_phase, build_model
    from distxfer.train.steps import TrainStep

    keras.config.set_dtype_policy(args.precision)
    size = (args.image_size, args.image_size)
    model_cfg = ModelConfig(
        backbone=args.backbone, weights=None, backbone_args=small_backbone_args(args.backbone)
    )
    with engine.scope():
        keras.utils.set_random_seed(0)
        model = build_model(model_cfg, args.classes, size, 3)
        apply_phase(model, PhaseConfig(trainable=args.trainable))
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if args.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    global_batch = args.batch_size * engine.num_replicas
    steps = TrainStep(
        model,
        optimizer,
        engine,
        global_batch=global_batch,
        num_classes=args.classes,
        xla=args.xla,
    )
    rng = np.random.default_rng(engine.rank)
    n = 8 * args.batch_size
    batches = {
        "image": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
        "label": rng.integers(0, args.classes, n).astype(np.int32),
        "weight": np.ones(n, np.float32),
        "id": np.arange(n, dtype=np.int64),
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
    return time.perf_counter() - started, engine.num_replicas


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


def processes(
    engine: str, workers: int, worker_args: list[str], result: str, *, pin: bool = True
) -> list[ProcessSpec]:
    """Processes for one measurement; `independent` is N single workers that never communicate."""
    python = [sys.executable, "-m", "distxfer.bench.engines"]
    cores = os.cpu_count() or 1
    if engine == "independent":
        return [
            ProcessSpec(
                [
                    *python,
                    *worker_args,
                    "--engine",
                    "single",
                    *(["--pin", str(i % cores)] if pin else []),
                    "--result",
                    f"{result}.{i}",
                ]
            )
            for i in range(workers)
        ]
    args = [*worker_args, "--result", result]
    if pin:
        sep = "," if engine == "mirrored" else "/"
        args += ["--pin", sep.join(str(c % cores) for c in range(workers))]
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


def measure(engine: str, workers: int, worker_args: list[str], *, pin: bool = True) -> dict:
    """One measurement: global images per second (summed over independent workers), replicas."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        specs = processes(engine, workers, worker_args, result, pin=pin)
        env = child_env(OMP_NUM_THREADS="1")
        output = io.StringIO()
        status = launchers.supervise(specs, env=env, output=output)
        files = [f"{result}.{i}" for i in range(workers)] if engine == "independent" else [result]
        if status or not all(os.path.exists(f) for f in files):
            raise RuntimeError(
                f"{engine} with {workers} worker(s) failed (status {status}):\n"
                + output.getvalue()[-6000:]
            )
        found = [json.loads(Path(f).read_text()) for f in files]
        return {
            "images_per_second": sum(r["images_per_second"] for r in found),
            "replicas": sum(r["replicas"] for r in found),
        }


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The worker flags shared by every measurement of one run of a benchmark."""
    flags = [
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--backbone",
        args.backbone,
        "--trainable",
        args.trainable,
    ]
    return flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["mirrored", "multiworker", "horovod"],
        choices=["mirrored", "multiworker", "horovod"],
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument(
        "--trainable",
        default="all",
        help="what trains: head (phase 1 of transfer learning) or all (fine-tuning everything)",
    )
    parser.add_argument("--json", default="runs/bench/engines.json", help="results file")


def run(args: argparse.Namespace) -> list[dict]:
    """Measure every configuration `repeats` times, interleaved, and report medians side by side."""
    info = header("engines", {k: v for k, v in vars(args).items() if k != "func"})
    flags = worker_arguments(args)
    plan = [("single", 1), ("independent", 2)] + [(e, n) for e in args.engines for n in (1, 2)]
    samples = interleaved(
        {
            f"{engine}/{workers}": lambda e=engine, w=workers: measure(e, w, flags)[
                "images_per_second"
            ]
            for engine, workers in plan
        },
        args.repeats,
    )
    mid = {key: median(values) for key, values in samples.items()}
    ceiling = mid["independent/2"] / (2 * mid["single/1"])
    print(f"hardware ceiling: 2 independent workers reach {ceiling:.3f} of 2 x one worker")
    rows = []
    for engine in args.engines:
        one, two = mid[f"{engine}/1"], mid[f"{engine}/2"]
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
        table(
            ["engine", "1 worker (img/s)", "2 workers (img/s)", "efficiency", "of the ceiling"],
            [[r["engine"], r["one"], r["two"], r["efficiency"], r["of_ceiling"]] for r in rows],
        ),
        flush=True,
    )
    write_json(args.json, info, {"ceiling": ceiling, "rows": rows, "samples": samples})
    return rows


if __name__ == "__main__":
    worker_main()
