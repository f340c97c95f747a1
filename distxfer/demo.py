"""`distxfer demo`: transfer learning end to end on built-in data, no download, minutes on a CPU.

ImageNet weights cannot be fetched everywhere, so the demo makes its own "pretrained" backbone:
1. source: train a small keras.applications backbone from scratch on the built-in SOURCE task
   (8 shapes) and save its backbone weights;
2. transfer: fine-tune that backbone on a different TARGET task (5 other shapes, few images per
   class) with the usual two phases, head first, then the top layers at a lower rate;
3. scratch: train the same model on the same target data from random weights, for the same
   wall-clock time as step 2 took;
then report both target test accuracies side by side. Every step is an ordinary training run
(checkpoints, TensorBoard, evaluation report) under `<run_dir>/{source,transfer,scratch}`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from distxfer.atomic import write_bytes
from distxfer.checkpoint import CheckpointStore
from distxfer.config import Config, load_config
from distxfer.errors import ConfigError
from distxfer.run import train
from distxfer.train.state import Outcome
from distxfer.train.stopping import EXIT_PREEMPTED

log = logging.getLogger(__name__)
SOURCE_IMAGES_PER_CLASS = 1000
SCRATCH_PHASE = (
    "phases=[{name: scratch, epochs: 1000, trainable: all, optimizer: adam, learning_rate: 0.002,"
    " lr_scaling: sqrt, schedule: constant}]"
)


def run_demo(
    run_dir: Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    config: Path = Path("configs/demo.yaml"),
    source_config: Path = Path("configs/demo_source.yaml"),
) -> dict:
    """Run the three trainings (each resumable) and write `<run_dir>/demo_report.md`."""
    from distxfer.data.demo import write_demo_datasets

    for path in (config, source_config):
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: run `distxfer demo` from the repository root, or pass --config"
            )
    data = write_demo_datasets(
        str(run_dir / "data"), seed=0, source_per_class=SOURCE_IMAGES_PER_CLASS
    )
    target_data = [
        f"data.train_dir={data.target_train}",
        f"data.val_dir={data.target_val}",
        f"data.test_dir={data.target_test}",
    ]
    source = load_config(
        source_config,
        [f"data.train_dir={data.source_train}", f"output.run_dir={run_dir / 'source'}", *overrides],
    )
    source_seconds = _train(source)
    backbone = _save_backbone(run_dir / "source")
    transfer = load_config(
        config,
        [
            *target_data,
            f"model.weights={backbone}",
            f"output.run_dir={run_dir / 'transfer'}",
            *overrides,
        ],
    )
    transfer_seconds = _train(transfer)
    scratch = load_config(
        config,
        [
            *target_data,
            "model.weights=null",
            "model.batchnorm=train",
            SCRATCH_PHASE,
            f"max_train_seconds={transfer_seconds:.1f}",
            f"output.run_dir={run_dir / 'scratch'}",
            *overrides,
        ],
    )
    scratch_seconds = _train(scratch)
    results = {name: _test_accuracy(run_dir / name) for name in ("source", "transfer", "scratch")}
    report = _report(run_dir, results, source_seconds, transfer_seconds, scratch_seconds, transfer)
    write_bytes(run_dir / "demo_report.md", report.encode())
    print("\n" + report)
    return results


def _train(config: Config) -> float:
    """Train (or resume, or find finished) one run; the seconds its training took in total."""
    if train(config, allow_config_change=False) is Outcome.SIGNAL:
        raise SystemExit(EXIT_PREEMPTED)
    store = CheckpointStore(
        Path(config.output.run_dir) / "checkpoints",
        keep=1,
        best_metric="val_accuracy",
        writer=False,
    )
    latest = store.latest()
    return latest.state.train_seconds if latest else 0.0


def _save_backbone(source_dir: Path) -> Path:
    from distxfer.inference import trained_model
    from distxfer.models import save_backbone_weights

    path = source_dir / "backbone.weights.h5"
    if not path.exists():
        model, *_ = trained_model(source_dir, "final")
        save_backbone_weights(model, path)
    return path


def _test_accuracy(run: Path) -> dict[str, float]:
    reports = {name: run / "eval" / f"{name}.json" for name in ("test", "validation")}
    split, path = next((name, p) for name, p in reports.items() if p.exists())
    return {"split": split, **json.loads(path.read_text())["metrics"]}


def _report(
    run_dir: Path,
    results: dict,
    source_s: float,
    transfer_s: float,
    scratch_s: float,
    transfer: Config,
) -> str:
    target_classes = 5
    height, width = transfer.data.image_hw
    src, xfer, scr = results["source"], results["transfer"], results["scratch"]
    lines = [
        "# distxfer demo: transfer learning on built-in shapes",
        "",
        f"Backbone: {transfer.model.backbone} {transfer.model.backbone_args or ''} at "
        f"{height}x{width}; target chance level {1 / target_classes:.0%}.",
        "",
        "| run | task | how | time | accuracy |",
        "|---|---|---|---|---|",
        f"| source | 8 source shapes | from scratch | {source_s:.0f} s | "
        f"{src['accuracy']:.1%} ({src['split']}) |",
        f"| transfer | 5 target shapes | source backbone, head then fine-tune | {transfer_s:.0f} s"
        f" | **{xfer['accuracy']:.1%}** ({xfer['split']}) |",
        f"| scratch | 5 target shapes | same model, random weights, same time | {scratch_s:.0f} s"
        f" | **{scr['accuracy']:.1%}** ({scr['split']}) |",
        "",
        "Runs (checkpoints, evaluation reports, TensorBoard) are in"
        f" {run_dir}/{{source,transfer,scratch}}.",
        f"Watch them: tensorboard --logdir {run_dir}",
        f"Evaluation report of the transfer run: {run_dir / 'transfer' / 'eval' / 'test.md'}",
        f"Classify images: distxfer predict {run_dir / 'transfer'} IMAGES_OR_FOLDERS",
    ]
    return "\n".join(lines) + "\n"
