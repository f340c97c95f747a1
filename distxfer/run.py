"""One training run from config to report: the `distxfer train` command.

Order matters: everything that can be wrong with the input (config, run directory, data folders,
bad images) is found before the engine starts and before any model is built. Then the chief
alone writes into the run directory: the resolved config, the class list, logs, checkpoints,
TensorBoard, the final evaluation report and the trained model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from distxfer.atomic import write_bytes
from distxfer.config import Config, config_differences, config_to_dict, dump_config
from distxfer.errors import ConfigError
from distxfer.report import build_report, write_report

if TYPE_CHECKING:
    from distxfer.data import DataSplits
    from distxfer.engines import Engine
    from distxfer.train.loop import Trainer

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = (
    "engine.",
    "max_train_seconds",
    "steps_per_execution",
    "xla",
    "output.log_every_steps",
    "output.stop_check_steps",
    "output.image_grid",
    "output.tensorboard",
    "output.keep_checkpoints",
    "output.checkpoint_every_steps",
    "data.cache",
    "data.scan",
)


def resolve_config(config: Config) -> Config:
    """Fill in what depends on other keys (the backbone's native image size); check the backbone."""
    from distxfer.models.backbones import resolve_backbone

    spec = resolve_backbone(config.model.backbone)
    if config.data.image_size is None:
        if spec.default_size is None:
            raise ConfigError(
                f"data.image_size: the {spec.name} model has no native size; set [height, width]"
            )
        config.data.image_size = [spec.default_size, spec.default_size]
    return config


def check_run_dir(run_dir: Path, config: Config, *, allow_config_change: bool) -> bool:
    """True if `run_dir` holds a run to resume; refuse to mix a different config into it."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        old = yaml.safe_load(saved.read_text()) or {}
        changed = [
            k
            for k in config_differences(old, config_to_dict(config))
            if not k.startswith(RESUMABLE_CHANGES)
        ]
        if changed and not allow_config_change:
            raise ConfigError(
                f"output.run_dir {run_dir} holds a run with a different config ({', '.join(changed[:6])});"
                " use a new output.run_dir, or pass --allow-config-change to resume it anyway"
            )
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"output.run_dir {run_dir} exists and is not a distxfer run; choose another directory"
        )
    return False


def train(config: Config, *, allow_config_change: bool = False, debug: bool = False) -> str:
    """Run (or resume) training; returns the outcome ("finished", "time" or "signal")."""
    from distxfer.data import load_splits
    from distxfer.engines import create_engine, detect_launch
    from distxfer.logs import setup_logging

    resolve_config(config)
    run_dir = Path(config.output.run_dir)
    launch = detect_launch()
    resuming = check_run_dir(run_dir, config, allow_config_change=allow_config_change)
    splits = load_splits(config.data, config.seed)
    engine = create_engine(config.engine, launch)
    setup_logging(engine.rank, run_dir / "train.log" if engine.is_chief else None, debug=debug)
    log.info("engine %s (%s)", engine.describe(), engine.reason)
    log.info("data: %d classes; %s", len(splits.class_names), describe_splits(splits))
    if engine.is_chief:
        _write_run_files(run_dir, config, splits, resuming)
    try:
        return _fit(config, engine, splits, run_dir)
    finally:
        engine.shutdown()


def describe_splits(splits: DataSplits) -> str:
    sizes = [
        f"{name} {len(split)}"
        for name, split in (
            ("train", splits.train),
            ("validation", splits.val),
            ("test", splits.test),
        )
        if split is not None
    ]
    return (
        ", ".join(sizes)
        + " images"
        + (f"; {len(splits.skipped)} bad files skipped" if splits.skipped else "")
    )


def _fit(config: Config, engine: Engine, splits: DataSplits, run_dir: Path) -> str:
    from distxfer.train.hooks import ProgressHook
    from distxfer.train.loop import Trainer

    hooks = []
    if engine.is_chief:
        hooks.append(ProgressHook())
        if config.output.tensorboard:
            from distxfer.tensorboard import TensorBoardHook

            hooks.append(TensorBoardHook(run_dir / "tensorboard", config))
    trainer = Trainer(config, engine, splits, run_dir, hooks)
    outcome = trainer.fit()
    if engine.is_chief and outcome != "signal":
        _write_outputs(trainer, run_dir)
    engine.barrier()
    return outcome


def _write_run_files(run_dir: Path, config: Config, splits: DataSplits, resuming: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(run_dir / "config.yaml", dump_config(config).encode())
    write_bytes(run_dir / "classes.json", json.dumps(splits.class_names, indent=1).encode())
    if splits.skipped:
        lines = [f"{bad.path}\t{bad.reason}" for bad in splits.skipped]
        write_bytes(run_dir / "skipped_files.tsv", ("\n".join(lines) + "\n").encode())
        log.warning(
            "skipped %d bad image files (data.bad_files=skip); list in %s",
            len(splits.skipped),
            run_dir / "skipped_files.tsv",
        )
    log.info("%s run directory %s", "resuming in" if resuming else "writing to", run_dir)


def _write_outputs(trainer: Trainer, run_dir: Path) -> None:
    from distxfer.export import export_keras

    for split, result in trainer.final_results.items():
        report = build_report(
            result.metrics,
            result.confusion,
            trainer.splits.class_names,
            split=split,
            run_dir=str(run_dir),
            global_step=trainer.position.global_step,
        )
        path = write_report(run_dir / "eval", report, split)
        summary = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        log.info("%s: %s (report %s)", split, summary, path)
    model_path = export_keras(
        trainer.model,
        run_dir / "model.keras",
        class_names=trainer.splits.class_names,
        config=trainer.config,
    )
    log.info(
        "model written to %s; TensorBoard: tensorboard --logdir %s",
        model_path,
        run_dir / "tensorboard",
    )
