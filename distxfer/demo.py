"""`distxfer demo`: transfer learning end to end on built-in data, no download, minutes on a CPU.

ImageNet weights cannot be fetched everywhere, so the demo makes its own "pretrained" backbone:
1. source: train a small keras.applications backbone from scratch on the built-in SOURCE task
   (8 shapes);
2. transfer: start from that run's backbone (`model.weights: <run_dir>/source`, the public way
   to transfer from a run) and fine-tune it on a different TARGET task (5 other shapes, 100
   training images per class) with the usual two phases: head first, then the whole backbone at a
   lower rate;
3. scratch: train the same model on the same target data from random weights, for the same
   training time as step 2 took;
then report the accuracies side by side, in a table and a plot of accuracy against training
time (`demo_report.md`, `demo_accuracy.png`). Every step is an ordinary training run
(checkpoints, TensorBoard, evaluation report) under `<run_dir>/{source,transfer,scratch}`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from distxfer.atomic import write_bytes
from distxfer.checkpoint import CheckpointStore
from distxfer.config import Config, load_config
from distxfer.demo_report import PLOT, RUNS, RunResult, accuracy_plot, read_run, render
from distxfer.errors import ConfigError
from distxfer.run import train
from distxfer.train.state import Outcome
from distxfer.train.stopping import EXIT_PREEMPTED

if TYPE_CHECKING:
    from distxfer.data.demo import DemoPaths

log = logging.getLogger(__name__)
SOURCE_IMAGES_PER_CLASS = 1500
TARGET_IMAGES_PER_CLASS = 100  # training images; validation and test keep the defaults
SCRATCH_PHASE = (
    "phases=[{name: scratch, epochs: 1000, trainable: all, optimizer: adam, learning_rate: 0.003,"
    " lr_scaling: sqrt, schedule: constant}]"
)


def write_demo_data(root: Path | str, seed: int = 0) -> DemoPaths:
    """Write (or find already written) the demo's datasets at the sizes its configs suit."""
    from distxfer.data.demo import write_demo_datasets

    return write_demo_datasets(
        str(root),
        seed=seed,
        source_per_class=SOURCE_IMAGES_PER_CLASS,
        target_train_per_class=TARGET_IMAGES_PER_CLASS,
    )


def run_demo(
    run_dir: Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    config: Path = Path("configs/demo.yaml"),
    source_config: Path = Path("configs/demo_source.yaml"),
) -> dict[str, RunResult]:
    """Run the three trainings (each resumable) and write `<run_dir>/demo_report.md`."""
    from distxfer.data.demo import SOURCE_CLASSES, TARGET_CLASSES

    for path in (config, source_config):
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: run `distxfer demo` from the repository root, or pass --config"
            )
    data = write_demo_data(run_dir / "data")
    target_data = [
        f"data.train_dir={data.target_train}",
        f"data.val_dir={data.target_val}",
        f"data.test_dir={data.target_test}",
    ]
    source = load_config(
        source_config,
        [f"data.train_dir={data.source_train}", f"output.run_dir={run_dir / 'source'}", *overrides],
    )
    seconds = {"source": _train(source)}
    transfer = load_config(
        config,
        [
            *target_data,
            f"model.weights={run_dir / 'source'}",  # the source run's final backbone
            f"output.run_dir={run_dir / 'transfer'}",
            *overrides,
        ],
    )
    seconds["transfer"] = _train(transfer)
    scratch = load_config(
        config,
        [
            *target_data,
            "model.weights=null",
            # the source run's recipe for training from scratch
            f"model.batchnorm={source.model.batchnorm}",
            f"model.batchnorm_momentum={json.dumps(source.model.batchnorm_momentum)}",
            SCRATCH_PHASE,
            f"max_train_seconds={seconds['transfer']:.1f}",
            f"output.run_dir={run_dir / 'scratch'}",
            *overrides,
        ],
    )
    seconds["scratch"] = _train(scratch)
    results = {name: read_run(run_dir / name, seconds[name]) for name in RUNS}
    chance = 1 / len(TARGET_CLASSES)
    write_bytes(run_dir / PLOT, accuracy_plot(results, chance))
    report = render(run_dir, results, transfer, len(TARGET_CLASSES), len(SOURCE_CLASSES))
    write_bytes(run_dir / "demo_report.md", report.encode())
    print("\n" + report)
    return results


def _train(config: Config) -> float:
    """Train (or resume, or find finished) one run; the seconds its training took in total.

    A run that used up its `max_train_seconds` (the scratch run) and was evaluated is done: a
    resumed run would get a new budget, and scratch would train longer than transfer did."""
    run_dir = Path(config.output.run_dir)
    store = CheckpointStore(
        run_dir / "checkpoints", keep=1, best_metric="val_accuracy", writer=False
    )
    latest = store.latest()
    budget = config.max_train_seconds
    evaluated = any((run_dir / "eval" / f"{s}.json").exists() for s in ("test", "validation"))
    if latest and budget and latest.state.train_seconds >= budget and evaluated:
        log.info("the run in %s already used its %.1f s of training", run_dir, budget)
        return latest.state.train_seconds
    if train(config, allow_config_change=False) is Outcome.SIGNAL:
        raise SystemExit(EXIT_PREEMPTED)
    latest = store.latest()
    return latest.state.train_seconds if latest else 0.0
