"""The config tree: what a run is made of, as typed dataclasses with their own value checks.

Field types are enforced by `distxfer.config.loader`; values that follow from other keys are
filled in by `distxfer.config.resolve`; then each `check` method here rejects values that have
the right type but cannot work, naming the key. Checks only read. Defaults are what a user gets
without writing the key, so each one is a value we would choose ourselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from distxfer.config.checks import require as _require
from distxfer.config.data import AugmentConfig as AugmentConfig  # re-exported
from distxfer.config.data import DataConfig
from distxfer.errors import ConfigError
from distxfer.models.backbones import is_model_file

Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


@dataclass
class HeadConfig:
    """The new classifier put on top of the backbone."""

    pooling: Literal["avg", "max", "flatten"] = "avg"
    dropout: float = 0.0
    hidden_units: int = 0  # 0 = no hidden layer

    def check(self, key: str) -> None:
        _require(0 <= self.dropout < 1, f"{key}.dropout", "must be in [0, 1)")
        _require(self.hidden_units >= 0, f"{key}.hidden_units", "must be 0 or more")


@dataclass
class ModelConfig:
    """The backbone, where its weights come from, and the head."""

    # any keras.applications name (case and _ ignored), "mlp", or a path to a .keras model
    backbone: str = "MobileNetV2"
    # "imagenet", null/"none", a weights file, or a distxfer run directory (RUN_DIR[:best])
    weights: str | None = "imagenet"
    backbone_args: dict[str, Any] = field(default_factory=dict)  # e.g. {alpha: 0.35}
    backbone_layer: str | None = None  # .keras backbone: the layer whose output is the features
    safe_mode: bool = True  # .keras backbone: Keras safe mode; false allows Lambda layers
    batchnorm: Literal["frozen", "train"] = "frozen"  # frozen = inference mode, as Keras advises
    # with batchnorm: train, the moving statistics' momentum in every backbone BatchNorm layer;
    # null keeps the architecture's (0.99, or 0.999 for MobileNetV2/V3: thousands of steps)
    batchnorm_momentum: float | None = None
    rescale: float = 1.0 / 255.0  # input scaling for the "mlp" model (backbones use their own)
    head: HeadConfig = field(default_factory=HeadConfig)

    def check(self, key: str) -> None:
        _require(
            bool(self.backbone.strip()), f"{key}.backbone", "must name a backbone, e.g. ResNet50"
        )
        _require(self.rescale > 0, f"{key}.rescale", "must be positive")
        if self.batchnorm_momentum is not None:
            _require(
                0.0 <= self.batchnorm_momentum < 1.0,
                f"{key}.batchnorm_momentum",
                f"must be in [0, 1), got {self.batchnorm_momentum}",
            )
            _require(
                self.batchnorm == "train",
                f"{key}.batchnorm_momentum",
                "only applies with model.batchnorm: train (frozen BatchNorm keeps its statistics)",
            )
        if is_model_file(self.backbone):
            _require(
                bool(self.backbone_layer),
                f"{key}.backbone_layer",
                f"a .keras backbone ({self.backbone}) needs the name of the layer whose output"
                " is the feature map",
            )
            _require(
                not self.backbone_args,
                f"{key}.backbone_args",
                "a .keras backbone takes none (its architecture is in the file); remove them",
            )
            _require(
                self.weights != "imagenet",
                f"{key}.weights",
                "imagenet does not apply to a .keras backbone, whose weights come from the file;"
                " set model.weights: null (keep them) or a run directory or weights file",
            )
        else:
            _require(
                self.backbone_layer is None,
                f"{key}.backbone_layer",
                "only applies to a .keras backbone (model.backbone: path/to/model.keras)",
            )
        self.head.check(f"{key}.head")


EARLY_STOPPING_METRICS = (
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_top5_accuracy",
    "loss",
    "accuracy",
)


@dataclass
class EarlyStoppingConfig:
    """Stop a phase when `metric` has not improved by more than `min_delta` for `patience`
    epochs; with `restore_best` the phase ends on the weights of its best epoch."""

    metric: str = "val_loss"  # lower is better for a loss, higher for anything else
    patience: int = 3  # epochs without improvement before the phase stops
    min_delta: float = 0.0  # smaller changes do not count as improvement
    restore_best: bool = True

    def check(self, key: str) -> None:
        _require(
            self.metric in EARLY_STOPPING_METRICS,
            f"{key}.metric",
            f"{self.metric!r} is not one of {', '.join(EARLY_STOPPING_METRICS)}",
        )
        _require(self.patience >= 1, f"{key}.patience", "must be at least 1 epoch")
        _require(
            self.min_delta >= 0 and math.isfinite(self.min_delta),
            f"{key}.min_delta",
            "must be 0 or more",
        )


@dataclass
class PhaseConfig:
    """One stage of training: which layers learn, for how long, and how fast."""

    name: str = ""
    epochs: int = 1
    trainable: str = "head"  # head | all | top:N (top N layers of the backbone) | from:LAYER
    train_batchnorm: bool = False  # let unfrozen BatchNorm layers learn gamma/beta
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = 1e-3  # for reference_batch; scaled to the global batch by lr_scaling
    lr_scaling: Literal["none", "linear", "sqrt"] = "linear"
    # the batch learning_rate was tuned for; null = data.batch_size
    reference_batch: int | None = None
    momentum: float = 0.9  # sgd and rmsprop
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: float = 0.0
    min_learning_rate: float = 0.0  # where cosine ends
    step_epochs: int = 10  # step schedule: multiply by step_factor every step_epochs
    step_factor: float = 0.1
    label_smoothing: float = 0.0
    clipnorm: float | None = None
    early_stopping: EarlyStoppingConfig | None = None  # null = run every epoch

    def check(self, key: str) -> None:
        _require(self.epochs >= 1, f"{key}.epochs", "must be at least 1")
        _require(
            self.learning_rate > 0 and math.isfinite(self.learning_rate),
            f"{key}.learning_rate",
            "must be a positive number",
        )
        _require(
            self.reference_batch is None or self.reference_batch >= 1,
            f"{key}.reference_batch",
            "must be at least 1",
        )
        _require(
            0 <= self.warmup_epochs <= self.epochs,
            f"{key}.warmup_epochs",
            f"must be between 0 and the phase's epochs ({self.epochs})",
        )
        _require(
            0 <= self.min_learning_rate <= self.learning_rate,
            f"{key}.min_learning_rate",
            "must be between 0 and learning_rate",
        )
        _require(self.step_epochs >= 1, f"{key}.step_epochs", "must be at least 1")
        _require(0 < self.step_factor <= 1, f"{key}.step_factor", "must be in (0, 1]")
        _require(0 <= self.label_smoothing < 1, f"{key}.label_smoothing", "must be in [0, 1)")
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be 0 or more")
        _require(self.clipnorm is None or self.clipnorm > 0, f"{key}.clipnorm", "must be positive")
        try:
            self.trainable_spec  # noqa: B018 - parsing is the check
        except ConfigError as exc:
            raise ConfigError(f"{key}.trainable: {exc}") from None
        if self.early_stopping is not None:
            self.early_stopping.check(f"{key}.early_stopping")

    @cached_property
    def trainable_spec(self) -> TrainableSpec:
        """`trainable`, parsed once (a bad value raises ConfigError; `check` names the key)."""
        return TrainableSpec.parse(self.trainable)


@dataclass(frozen=True)
class TrainableSpec:
    """Which backbone layers learn in a phase: `phases[].trainable` parsed."""

    kind: Literal["head", "all", "top", "from"]
    count: int = 0  # top:N, the last N backbone layers with weights
    layer: str = ""  # from:LAYER, that layer and every one after it

    @classmethod
    def parse(cls, text: str) -> TrainableSpec:
        value = text.strip()
        if value in ("head", "all"):
            return cls(value)  # type: ignore[arg-type]
        kind, _, arg = value.partition(":")
        if kind == "top" and arg.strip().isdigit() and int(arg) >= 1:
            return cls("top", count=int(arg))
        if kind == "from" and arg.strip():
            return cls("from", layer=arg.strip())
        raise ConfigError(f"{value!r} is not one of head, all, top:N, from:LAYER_NAME")


@dataclass
class EngineConfig:
    """Which distributed engine runs the step, and its knobs."""

    name: Literal["auto", "single", "mirrored", "multiworker", "horovod"] = "auto"
    cpu_replicas: int = 0  # mirrored on a CPU-only machine: split the CPU into N logical devices
    collective: Literal["auto", "ring", "nccl"] = "auto"  # multiworker all-reduce implementation
    fp16_allreduce: bool = False  # horovod: compress gradients to float16 on the wire
    threads: int = 0  # intra- and inter-op threads per process; 0 = TensorFlow's defaults
    # how long ranks wait for one that stopped answering before all stop; 0 = wait forever
    collective_timeout_seconds: float = 600.0

    def check(self, key: str) -> None:
        _require(self.cpu_replicas >= 0, f"{key}.cpu_replicas", "must be 0 or more")
        _require(self.threads >= 0, f"{key}.threads", "must be 0 or more")
        timeout = self.collective_timeout_seconds
        _require(
            timeout == 0 or 5 <= timeout < math.inf,
            f"{key}.collective_timeout_seconds",
            "must be 0 (wait forever) or at least 5 seconds",
        )


@dataclass
class OutputConfig:
    """What the run writes and where."""

    run_dir: str = "runs/default"
    checkpoint_every_steps: int = 0  # 0 = only at epoch and phase ends
    keep_checkpoints: int = 3  # newest step checkpoints kept, besides the best
    best_metric: Literal["val_accuracy", "val_loss", "val_top5_accuracy"] = "val_accuracy"
    tensorboard: bool = True
    log_every_steps: int = 20  # TensorBoard scalars and throughput
    image_grid: int = 16  # augmented training images shown in TensorBoard per phase; 0 = none
    stop_check_steps: int = 10  # how often ranks agree whether to stop (signal or time limit)

    def check(self, key: str) -> None:
        _require(
            self.checkpoint_every_steps >= 0, f"{key}.checkpoint_every_steps", "must be 0 or more"
        )
        _require(self.keep_checkpoints >= 1, f"{key}.keep_checkpoints", "must be at least 1")
        _require(self.log_every_steps >= 1, f"{key}.log_every_steps", "must be at least 1")
        _require(0 <= self.image_grid <= 64, f"{key}.image_grid", "must be between 0 and 64")
        _require(self.stop_check_steps >= 1, f"{key}.stop_check_steps", "must be at least 1")


@dataclass
class Config:
    """A whole run."""

    seed: int = 0
    precision: Precision = "float32"
    xla: bool = False  # compile the forward and backward pass with XLA (jit_compile)
    steps_per_execution: int = 1  # training steps per compiled call
    max_train_seconds: float = 0.0  # stop cleanly (checkpoint, then evaluate) after this; 0 = none
    nonfinite_loss: Literal["error", "skip"] = (
        "error"  # a NaN/inf loss stops the run, or is skipped
    )
    nonfinite_skip_limit: int = 10  # with skip: batches skipped over the run before it stops
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig(name="head")])
    engine: EngineConfig = field(default_factory=EngineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def check(self) -> None:
        _require(self.seed >= 0, "seed", "must be 0 or more")
        _require(self.steps_per_execution >= 1, "steps_per_execution", "must be at least 1")
        _require(self.max_train_seconds >= 0, "max_train_seconds", "must be 0 or more")
        _require(self.nonfinite_skip_limit >= 0, "nonfinite_skip_limit", "must be 0 or more")
        _require(len(self.phases) >= 1, "phases", "must list at least one phase")
        self.data.check("data")
        self.model.check("model")
        names = [p.name for p in self.phases]
        _require(len(names) == len(set(names)), "phases", "phase names must be unique")
        has_val = bool(self.data.val_dir or self.data.val_split)
        for i, phase in enumerate(self.phases):
            phase.check(f"phases.{i}")
            stopping = phase.early_stopping
            _require(
                stopping is None or has_val or not stopping.metric.startswith("val_"),
                f"phases.{i}.early_stopping.metric",
                f"{stopping and stopping.metric} needs validation data; set data.val_dir or"
                " data.val_split, or watch loss or accuracy",
            )
        self.engine.check("engine")
        self.output.check("output")
        every, spe = self.output.checkpoint_every_steps, self.steps_per_execution
        _require(
            every % spe == 0,
            "output.checkpoint_every_steps",
            f"must be a multiple of steps_per_execution ({spe})",
        )
