"""The `distxfer` command: train, evaluate, predict, export, data, weights, doctor, demo, bench,
slurm, runs, cv.

Errors caused by input print as one line (`distxfer: error: ...`, any list after it) with exit
status 2; a run stopped by a fault exits with its error's own code (`distxfer.errors`); `--debug`
shows the traceback. A training run stopped by SIGTERM/SIGUSR1 exits with 75 after checkpointing:
run the same command again to resume. Every command module is imported here and imports no
TensorFlow until its command has checked its input (the rule in `distxfer/__init__.py`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from distxfer import bench, crossval, doctor
from distxfer.config import load_config
from distxfer.data import commands as data_commands
from distxfer.demo import run_demo
from distxfer.engines import current_launch
from distxfer.errors import ConfigError, DistxferError
from distxfer.inference import evaluate_run, export_run, predict_to_csv
from distxfer.logs import quiet_tensorflow, setup_logging
from distxfer.run import check_start, train
from distxfer.runs import render as render_runs
from distxfer.runs import summarize
from distxfer.slurm import command as slurm_command
from distxfer.train.state import Outcome
from distxfer.train.stopping import EXIT_PREEMPTED, hold_stop_signals


def _train(args: argparse.Namespace) -> int:
    hold_stop_signals()  # a preemption signal during start-up stops the run at its first step
    config = load_config(args.config, args.overrides)
    if args.check:
        resuming = check_start(config, allow_config_change=args.allow_config_change)
        action = "resume the run" if resuming else "start a new run"
        print(f"config ok: would {action} in {config.output.run_dir}")
        return 0
    outcome = train(config, allow_config_change=args.allow_config_change)
    return EXIT_PREEMPTED if outcome is Outcome.SIGNAL else 0


def _evaluate(args: argparse.Namespace) -> int:
    evaluate_run(
        Path(args.run_dir),
        data_dir=args.data,
        checkpoint=args.checkpoint,
        overrides=args.overrides,
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    predict_to_csv(
        Path(args.model),
        [Path(p) for p in args.inputs],
        Path(args.output),
        top_k=args.top_k,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
        trust_code=args.trust_model_code,
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    for path in export_run(
        Path(args.run_dir),
        Path(args.output) if args.output else None,
        formats=args.format,
        checkpoint=args.checkpoint,
    ):
        print(path)
    return 0


def _data(args: argparse.Namespace) -> int:
    return data_commands.run(args)


def _weights(args: argparse.Namespace) -> int:
    from distxfer.models.weights import prefetch_weights

    for line in prefetch_weights(args.backbones, keras_home=args.keras_home):
        print(line)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    unknown = [t for t in args.topics if t not in doctor.TOPICS]
    if unknown:
        raise ConfigError(
            f"distxfer doctor: {unknown[0]!r} is not one of {', '.join(doctor.TOPICS)}"
        )
    checks = doctor.collect(args.topics)
    print(doctor.render(checks, args.topics))
    return doctor.exit_status(checks, args.topics)


def _demo(args: argparse.Namespace) -> int:
    run_demo(
        Path(args.run_dir),
        overrides=args.overrides,
        config=Path(args.config),
        source_config=Path(args.source_config),
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    return bench.run(args)


def _runs(args: argparse.Namespace) -> int:
    print(render_runs(summarize(Path(args.folder))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distxfer", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train (or resume) a run from a YAML config")
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. data.batch_size=64",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a run directory even though its config differs",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="check the config, run directory, model files and data folders, then exit",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a run's model on labelled class folders")
    p.add_argument("run_dir")
    p.add_argument(
        "--data", help="class folders to evaluate on (default: the run's test_dir, else val)"
    )
    p.add_argument(
        "--checkpoint", default="final", help="final | best | latest | a checkpoint file"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="e.g. engine.name=single data.batch_size=64",
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "predict", help="classify images into a CSV of top-k classes and probabilities"
    )
    p.add_argument("model", help="a run directory or an exported .keras file")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", default="predictions.csv")
    p.add_argument("-k", "--top-k", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--checkpoint", default="final", help="for a run directory: final | best | latest"
    )
    p.add_argument(
        "--trust-model-code",
        action="store_true",
        help="load a .keras file even if it holds Python code (a Lambda layer): only if you"
        " trust where it came from",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export", help="export a run's model as .keras and/or TF SavedModel, or its backbone"
    )
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", help="output directory (default: <run_dir>/export)")
    p.add_argument(
        "--format",
        choices=["keras", "savedmodel", "both", "backbone"],
        default="both",
        help="backbone: backbone.weights.h5 and backbone.keras, to transfer from elsewhere",
    )
    p.add_argument(
        "--checkpoint", default="final", help="final | best | latest | a checkpoint file"
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "data", help="inspect a dataset, convert it to TFRecords, or write the demo data"
    )
    data_commands.add_arguments(p)
    p.set_defaults(func=_data)

    p = sub.add_parser(
        "weights", help="download ImageNet weights into the Keras cache (for offline nodes)"
    )
    p.add_argument("backbones", nargs="+", help="backbone names, e.g. ResNet50 VGG16, or 'all'")
    p.add_argument("--keras-home", help="cache root (default: $KERAS_HOME or ~/.keras)")
    p.set_defaults(func=_weights)

    p = sub.add_parser(
        "doctor",
        help="versions, devices, and which engines run here (each probed); exit 1 if one you"
        " name cannot work",
    )
    p.add_argument(
        "topics",
        nargs="*",
        metavar="ENGINE_OR_SLURM",
        help=f"what must work: {', '.join(doctor.TOPICS)} (default: probe every engine, warn)",
    )
    p.set_defaults(func=_doctor)

    p = sub.add_parser(
        "demo", help="transfer learning end to end on the built-in data (a few minutes on CPU)"
    )
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("-c", "--config", default="configs/demo.yaml", help="the target task's config")
    p.add_argument(
        "--source-config", default="configs/demo_source.yaml", help="the source task's config"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every demo run")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "bench",
        help="benchmarks, side by side: input, loop, engines, synthetic, feature-cache, scan",
    )
    bench.add_arguments(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser(
        "slurm", help="write a Slurm batch script for a config or a sweep; --submit submits it"
    )
    slurm_command.add_arguments(p)
    p.set_defaults(func=slurm_command.run)

    p = sub.add_parser("runs", help="one table of the runs of a sweep folder or run directory")
    p.add_argument("folder", help="a sweep folder, a folder of run directories, or one run")
    p.set_defaults(func=_runs)

    p = sub.add_parser(
        "cv", help="k-fold cross-validation: one run per fold, then mean and spread of each metric"
    )
    crossval.add_arguments(p)
    p.set_defaults(func=crossval.run)
    return parser


def error_text(exc: DistxferError, rank: int = 0) -> str:
    """`distxfer: error: MESSAGE` on one line (prefixed `[rank N]` off the chief), then the
    error's details, each on its own indented line."""
    prefix = f"[rank {rank}] " if rank else ""
    return "\n".join([f"{prefix}distxfer: error: {exc}", *(f"  {d}" for d in exc.details)])


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come before and after options (launchers add theirs first): collect them all.
    stray = [item for item in extra if "=" not in item or item.startswith("-")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]  # command-line order: later overrides win
    rank = current_launch().rank
    try:
        setup_logging(rank, debug=args.debug)  # quiet non-chief ranks from the start
        return int(args.func(args) or 0)
    except DistxferError as exc:
        if args.debug:
            raise
        print(error_text(exc, rank), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("distxfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
