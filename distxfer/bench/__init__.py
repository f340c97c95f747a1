"""`distxfer bench`: benchmarks that compare side by side in one run, each a subcommand.

    input          the input pipeline against Keras's loaders (small JPEGs, large photos)
    loop           the trainer's compiled step against `model.fit`
    engines        1 and 2 workers per engine: weak-scaling efficiency
    synthetic      any backbone on random data: images/s per replica and in total, per engine
    feature-cache  a frozen-backbone phase with and without the feature cache
    scan           listing, scanning and restarting on a tree of 1.28 million files

Each prints a table and writes JSON (machine, versions, settings, medians, every sample) to
`runs/bench/NAME.json` (`--json`). Nothing here imports TensorFlow before a benchmark runs.
"""

from __future__ import annotations

import argparse
import importlib

# subcommand -> (module, help)
BENCHMARKS = {
    "input": ("input", "the input pipeline against Keras's loaders"),
    "loop": ("loop", "the trainer's step against model.fit"),
    "engines": ("engines", "1 and 2 workers per engine, weak-scaling efficiency"),
    "synthetic": ("synthetic", "any backbone on random data: img/s per replica and in total"),
    "feature-cache": ("featurecache", "a frozen-backbone phase with and without the cache"),
    "scan": ("scan", "listing and restarting on a tree of 1.28 million files"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (module, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text)
        importlib.import_module(f"distxfer.bench.{module}").add_arguments(p)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"distxfer.bench.{BENCHMARKS[args.benchmark][0]}")
    module.run(args)
    return 0
