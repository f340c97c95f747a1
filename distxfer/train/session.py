"""A training run once its engine has started: the hooks, the Trainer, and what the chief
writes when training ends (evaluation reports and the trained model)."""

from __future__ import annotations

import logging
from pathlib import Path

from distxfer.config import Config
from distxfer.data import DataSplits
from distxfer.engines import Engine
from distxfer.export import export_keras
from distxfer.report import build_report, write_report
from distxfer.tensorboard import TensorBoardHook
from distxfer.train.hooks import Hook, ProgressHook
from distxfer.train.loop import Trainer
from distxfer.train.state import Outcome
from distxfer.train.throughput import InputWaitWarning

log = logging.getLogger("distxfer.run")


def fit_run(config: Config, engine: Engine, splits: DataSplits, run_dir: Path) -> Outcome:
    """Train (or resume) on every rank; the chief then writes reports and the model."""
    hooks: list[Hook] = []
    if engine.is_chief:
        hooks += [ProgressHook(), InputWaitWarning()]
        if config.output.tensorboard:
            hooks.append(TensorBoardHook(run_dir / "tensorboard", config))
    trainer = Trainer(config, engine, splits, run_dir, hooks)
    outcome = trainer.fit()
    if engine.is_chief and outcome is not Outcome.SIGNAL:
        write_outputs(trainer, run_dir)
    engine.barrier()
    return outcome


def write_outputs(trainer: Trainer, run_dir: Path) -> None:
    """The final evaluation reports under `eval/` and the trained model as `model.keras`."""
    class_names = trainer.splits.class_names
    for split, result in trainer.final_results.items():
        report = build_report(
            result.metrics,
            result.confusion,
            class_names,
            split=split,
            run_dir=str(run_dir),
            global_step=trainer.position.global_step,
        )
        path = write_report(run_dir / "eval", report, split)
        summary = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        log.info("%s: %s (report %s)", split, summary, path)
    model_path = export_keras(
        trainer.model, run_dir / "model.keras", class_names=class_names, config=trainer.config
    )
    tensorboard = run_dir / "tensorboard"
    log.info("model written to %s; TensorBoard: tensorboard --logdir %s", model_path, tensorboard)
