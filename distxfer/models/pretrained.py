"""Where a backbone and its starting weights come from, found and checked before TensorFlow starts.

`model.weights` is one of:
- "imagenet": Keras's own download, cached under KERAS_HOME;
- None: random initialisation for a keras.applications backbone, the file's own weights for a
  `.keras` backbone;
- a weights file: a `.weights.h5` saved from a backbone of the same architecture (by
  `distxfer export RUN_DIR --format backbone`, for example), or Keras's own notop `.h5`;
- a distxfer run directory: `RUN_DIR` for the backbone of its final model, `RUN_DIR:best` for
  that of its best checkpoint. The run must have trained the same backbone (same
  `model.backbone`, `backbone_args` and `backbone_layer`), so runs chain: pretrain on one task,
  transfer to a second, transfer that run to a third.

`check_model_sources` finds every problem with these, and with a `.keras` backbone file, before
the engine starts. Pure Python: the checkpoints are numpy files; no TensorFlow import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from distxfer.checkpoint import BEST, CheckpointStore, Snapshot, UnreadableCheckpoint, read_snapshot
from distxfer.config.loader import load_config
from distxfer.config.schema import Config, ModelConfig
from distxfer.errors import CheckpointError, ConfigError
from distxfer.models.backbones import resolve_backbone
from distxfer.models.kerasfile import check_backbone_file

Checkpoint = Literal["final", "best"]
_SUFFIXES: dict[str, Checkpoint] = {":best": "best", ":final": "final"}


@dataclass(frozen=True)
class WeightsSource:
    """`model.weights`, parsed."""

    kind: Literal["imagenet", "none", "file", "run"]
    path: Path | None = None
    checkpoint: Checkpoint = "final"  # for a run: its final model or its best checkpoint

    @property
    def where(self) -> Path:
        """The file or run directory (for kinds "file" and "run")."""
        assert self.path is not None, f"model.weights {self.kind} names no path"
        return self.path

    def __str__(self) -> str:
        if self.kind == "run":
            return f"{self.path}" + (":best" if self.checkpoint == "best" else "")
        return str(self.path) if self.path else self.kind


def weights_source(weights: str | None) -> WeightsSource:
    """What `model.weights` (as resolved) names; reads nothing but whether a path is a folder."""
    if weights is None:
        return WeightsSource("none")
    if weights == "imagenet":
        return WeightsSource("imagenet")
    text = weights.strip()
    for suffix, checkpoint in _SUFFIXES.items():
        if text.endswith(suffix):
            return WeightsSource("run", Path(text[: -len(suffix)]).expanduser(), checkpoint)
    path = Path(text).expanduser()
    return WeightsSource("run" if path.is_dir() else "file", path)


def check_model_sources(model: ModelConfig) -> None:
    """Raise a ConfigError naming the key if the backbone file or the weights cannot be used."""
    spec = resolve_backbone(model.backbone)
    if spec.path is not None:
        check_backbone_file(spec.path, model.backbone_layer, safe_mode=model.safe_mode)
    source = weights_source(model.weights)
    if source.kind == "file":
        require_weights_file(source.where)
    if source.kind == "run":
        check_same_backbone(model, run_config(source), source.where)
        run_checkpoint(source)


def require_weights_file(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(
            f"model.weights: weights file {path} does not exist; give a .weights.h5 saved by"
            " distxfer (distxfer export RUN_DIR --format backbone) or a Keras notop .h5, a"
            " distxfer run directory, 'imagenet', or null for random init"
        )


def run_config(source: WeightsSource) -> Config:
    """The resolved config of the run `source` names."""
    config_path = source.where / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(
            f"model.weights: {source.path} is not a distxfer run directory (no config.yaml); give"
            " the output.run_dir of a finished training run, a weights file, or 'imagenet'"
        )
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise ConfigError(f"model.weights: the run's {config_path} does not load: {exc}") from None


def check_same_backbone(model: ModelConfig, source: Config, run_dir: Path) -> None:
    """The run in `run_dir`, whose config is `source`, trained the backbone `model` builds."""
    theirs, ours = resolve_backbone(source.model.backbone), resolve_backbone(model.backbone)
    where = f"model.weights: the run {run_dir}"
    if not theirs.has_backbone:
        raise ConfigError(f"{where} trained the mlp model, which has no backbone to transfer")
    if theirs.path is not None or ours.path is not None:
        mine = (ours.path is not None, model.backbone_layer)
        if (theirs.path is not None, source.model.backbone_layer) != mine:
            raise ConfigError(
                f"{where} trained backbone {source.model.backbone} cut at"
                f" {source.model.backbone_layer}, but this config builds {model.backbone} cut at"
                f" {model.backbone_layer}; use the same model.backbone and model.backbone_layer"
            )
        return  # the same file-defined architecture; the arrays are checked as they load
    if (theirs.name, source.model.backbone_args) != (ours.name, model.backbone_args):
        raise ConfigError(
            f"{where} trained {theirs.name} with backbone_args {source.model.backbone_args}, but"
            f" this config builds {ours.name} with {model.backbone_args}; set model.backbone:"
            f" {theirs.name} and model.backbone_args: {source.model.backbone_args or '{}'}"
        )


def run_checkpoint(source: WeightsSource) -> Snapshot:
    """The checkpoint of the run `source` names: its final one (the run must have finished) or
    its best one."""
    directory = source.where / "checkpoints"
    store = CheckpointStore(directory, keep=1, best_metric="val_accuracy", writer=False)
    try:
        if source.checkpoint == "best":
            if not (directory / BEST).exists():
                raise ConfigError(
                    f"model.weights: the run {source.path} has no best checkpoint (it had no"
                    f" validation data, or has not finished an epoch); use {source.path} for its"
                    " final model"
                )
            return read_snapshot(directory / BEST)
        snapshot = store.latest()
    except (UnreadableCheckpoint, CheckpointError) as exc:
        raise ConfigError(f"model.weights: {exc}") from None
    if snapshot is None or not snapshot.state.finished:
        at = f"it stopped at step {snapshot.state.global_step}" if snapshot else "no checkpoints"
        raise ConfigError(
            f"model.weights: the run {source.path} has not finished ({at}); finish it with"
            f" distxfer train, or use {source.path}:best"
        )
    return snapshot
