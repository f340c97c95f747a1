"""TensorBoard output of a run (chief only): scalars, augmented inputs, hparams, confusion matrices.

Layout follows Keras's TensorBoard callback so runs compare side by side: `train/` and
`validation/` writers under `<run_dir>/tensorboard`, epoch metrics as `epoch_<name>` at the
epoch number (counted across phases), and per-interval training scalars at the global step. The
config goes in as hparams at the root, so with `--logdir` on a folder of runs TensorBoard's HParams
tab shows each run's settings beside its train/ and validation/ metrics.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from distxfer.config import Config, config_to_dict, dump_config
from distxfer.report import confusion_png
from distxfer.train.evaluate import EvalResult
from distxfer.train.hooks import Hook
from distxfer.train.state import Outcome

if TYPE_CHECKING:
    from distxfer.config import PhaseConfig
    from distxfer.train.loop import Trainer

log = logging.getLogger(__name__)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Dotted keys to scalar values, as the hparams plugin accepts them."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                flat.update(flatten(item, f"{name}.{i}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """[N, H, W, C] uint8 images tiled into one [rows*H, columns*W, C] image with 2-pixel gaps."""
    n, h, w, c = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = np.full((rows * (h + 2), columns * (w + 2), c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, col * (w + 2) + 1 : col * (w + 2) + 1 + w] = (
            image
        )
    return grid


def _survives_write_errors(method: Callable[..., None]) -> Callable[..., None]:
    """A failed TensorBoard write (disk full, read-only) stops TensorBoard output, not training:
    the chief alone writes here, and raising would leave the other ranks in a collective. A
    checkpoint written to the same disk fails next, and stops every rank alike."""

    @functools.wraps(method)
    def guarded(self: TensorBoardHook, *args: Any) -> None:
        if self.failed:
            return
        try:
            method(self, *args)
        except (tf.errors.OpError, OSError) as exc:
            self.failed = True
            log.warning(
                "TensorBoard output stopped: could not write to %s (%s); training goes on",
                self.log_dir,
                " ".join(str(exc).split())[:200],
            )

    return guarded


class TensorBoardHook(Hook):
    def __init__(self, log_dir: Path, config: Config) -> None:
        self.log_dir = Path(log_dir)
        self.config = config
        self.failed = False
        self.train = tf.summary.create_file_writer(str(self.log_dir / "train"))
        self.validation = tf.summary.create_file_writer(str(self.log_dir / "validation"))

    @_survives_write_errors
    def on_train_begin(self, trainer: Trainer) -> None:
        # At the root, so TensorBoard's HParams tab finds the train/ and validation/ metrics below.
        root = tf.summary.create_file_writer(str(self.log_dir))
        with root.as_default():
            hp.hparams(flatten(config_to_dict(self.config)), trial_id=str(trainer.run_dir))
        root.close()
        with self.train.as_default():
            tf.summary.text(
                "config", f"```\n{dump_config(self.config)}\n```", step=trainer.position.global_step
            )
        self.train.flush()

    @_survives_write_errors
    def on_phase_begin(self, trainer: Trainer, index: int, phase: PhaseConfig) -> None:
        count = trainer.config.output.image_grid
        if not count:
            return
        images, labels = trainer.epochs.preview(trainer.position, count)
        grid = image_grid(images)
        names = ", ".join(trainer.splits.class_names[int(i)] for i in labels)
        with self.train.as_default():
            tf.summary.image(
                f"augmented_inputs/{phase.name}",
                grid[None],
                step=trainer.position.global_step,
                description=f"Training inputs after augmentation, in order: {names}",
            )
        self.train.flush()

    @_survives_write_errors
    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        with self.train.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=trainer.position.global_step)

    @_survives_write_errors
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        epoch = trainer.epochs.index(trainer.position.phase, trainer.position.epoch)
        for name, value in metrics.items():
            writer, key = (
                (self.validation, name[4:]) if name.startswith("val_") else (self.train, name)
            )
            with writer.as_default():
                tf.summary.scalar(f"epoch_{key}", value, step=epoch)
        self.train.flush()
        self.validation.flush()

    @_survives_write_errors
    def on_evaluation(self, trainer: Trainer, split: str, result: EvalResult) -> None:
        png = confusion_png(
            result.confusion, trainer.splits.class_names, title=f"Confusion matrix: {split}"
        )
        image = tf.image.decode_png(png, channels=4)
        writer = self.validation if split == "validation" else self.train
        with writer.as_default():
            tf.summary.image(
                f"confusion_matrix/{split}", image[None], step=trainer.position.global_step
            )
            for name, value in result.metrics.items():
                tf.summary.scalar(f"{split}/{name}", value, step=trainer.position.global_step)
        writer.flush()

    @_survives_write_errors
    def on_train_end(self, trainer: Trainer, outcome: Outcome) -> None:
        self.train.close()
        self.validation.close()
