"""`distxfer bench synthetic`: any backbone on random data of its input shape, in images per
second per replica and in total, for each engine (Horovod's synthetic benchmark, our way).

The workers are those of `distxfer bench engines` (the trainer's own compiled step on in-memory
random uint8 images), not pinned to cores, with the precision, XLA and thread settings given:
on a GPU node this is the figure to hold against published ones (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse

from distxfer.bench.common import header, interleaved, median, table, write_json
from distxfer.bench.engines import measure, worker_arguments
from distxfer.models import resolve_backbone


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="EfficientNetB0")
    parser.add_argument("--image-size", type=int, help="default: the backbone's native size")
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["single", "mirrored", "multiworker", "horovod"],
        choices=["single", "mirrored", "multiworker", "horovod"],
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (mirrored: replicas)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--trainable", default="all")
    parser.add_argument("--precision", default="float32", help="float32 | mixed_float16 | ...")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="per worker; 0 = TensorFlow's")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--json", default="runs/bench/synthetic.json", help="results file")


def run(args: argparse.Namespace) -> list[dict]:
    spec = resolve_backbone(args.backbone)
    args.image_size = args.image_size or spec.default_size or 224
    info = header("synthetic", {k: v for k, v in vars(args).items() if k != "func"})
    flags = worker_arguments(args) + [
        "--precision",
        args.precision,
        "--threads",
        str(args.threads),
        "--classes",
        str(args.classes),
    ]
    flags += ["--xla"] if args.xla else []
    plan = {e: 1 if e == "single" else args.workers for e in args.engines}
    replicas: dict[str, int] = {}

    def one(engine: str) -> float:
        result = measure(engine, plan[engine], flags, pin=False)
        replicas[engine] = result["replicas"]
        return result["images_per_second"]

    samples = interleaved({e: lambda e=e: one(e) for e in plan}, args.repeats)
    rows = []
    for engine, values in samples.items():
        total = median(values)
        rows.append(
            {
                "engine": engine,
                "replicas": replicas[engine],
                "images_per_second": total,
                "per_replica": total / replicas[engine],
            }
        )
    print(
        table(
            ["engine", "replicas", "img/s total", "img/s per replica"],
            [[r["engine"], r["replicas"], r["images_per_second"], r["per_replica"]] for r in rows],
        ),
        flush=True,
    )
    write_json(args.json, info, {"rows": rows, "samples": samples})
    return rows
