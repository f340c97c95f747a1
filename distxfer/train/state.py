"""What a checkpoint records about a run, as one typed definition with its JSON round trip.

A checkpoint file (see `distxfer.checkpoint`) holds arrays and one JSON `state`: where training
is (`Position`), why the checkpoint was written, the best validation metric so far, how long
training has run, the data order it assumed (`DataOrder`; `same_samples` says whether a
resumed run with other workers or batch still covers the same samples at that step) and, in a
phase with early stopping, its patience so far (`Patience`). `RunState` is that JSON, typed;
`to_json` and `from_json` keep the layout every distxfer checkpoint of `STATE_VERSION` has
(fields added later have defaults, and `patience` is left out while there is none, so older
checkpoints read and write alike).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal

from distxfer.errors import CheckpointError

STATE_VERSION = 1
NUM_STATS = 4  # summed training statistics: loss, correct, top-k correct, count

CheckpointReason = Literal["interval", "epoch", "final", "time", "signal"]


class Outcome(str, Enum):
    """How `Trainer.fit` ended."""

    FINISHED = "finished"  # every phase ran
    TIME = "time"  # max_train_seconds spent: checkpointed, then evaluated like a finished run
    SIGNAL = "signal"  # SIGTERM/SIGUSR1: checkpointed; run the same command to resume


@dataclass
class Position:
    """Where training is: the next step to run."""

    phase: int = 0
    epoch: int = 0  # within the phase
    step: int = 0  # within the epoch
    global_step: int = 0  # optimizer steps over the whole run


@dataclass(frozen=True)
class BestMetric:
    """The best value of `output.best_metric` so far, and the step that reached it."""

    metric: str
    value: float
    global_step: int

    def beaten_by(self, value: float) -> bool:
        """Whether `value` is better: lower for a loss, higher for anything else."""
        return value < self.value if self.metric.endswith("loss") else value > self.value


@dataclass
class Patience:
    """Early stopping in one phase: its best epoch so far and the epochs waited since."""

    phase: int
    metric: str
    best: float | None = None
    best_step: int = -1  # global step of the checkpoint written at the best epoch's end
    waited: int = 0  # epochs since the best that did not improve on it
    stopped: bool = False  # the phase has run out of patience

    def improves(self, value: float, min_delta: float) -> bool:
        """Whether `value` beats the best by more than `min_delta` (lower is better for a loss)."""
        if self.best is None:
            return True
        if self.metric.endswith("loss"):
            return value < self.best - min_delta
        return value > self.best + min_delta


@dataclass(frozen=True)
class DataOrder:
    """What fixes which samples a step covers: resuming mid-epoch needs the same values."""

    seed: int
    global_batch: int  # samples per optimizer step (every micro-batch of an accumulating step)
    num_pipelines: int  # input pipelines (worker processes)
    num_train: int
    train_fingerprint: str


def same_samples(
    saved: DataOrder, now: DataOrder, order_depends_on_workers: bool
) -> tuple[bool, str]:
    """Whether a saved step covers the same samples in this run, and what changed ("" for
    nothing that matters): another global batch never does; other workers do when the input
    keeps one order for the whole epoch (class folders), not when it deals files to workers."""
    workers = f"{saved.num_pipelines} -> {now.num_pipelines} worker processes"
    if saved.global_batch != now.global_batch:
        return False, (
            f"the global batch changed ({saved.global_batch} -> {now.global_batch} images per"
            " step), so a step no longer covers the same images"
        )
    if saved.num_pipelines == now.num_pipelines:
        return True, ""
    if order_depends_on_workers:
        return False, (
            f"the workers changed ({workers}) and this input (TFRecord files dealt to workers)"
            " orders each epoch by worker"
        )
    return True, (
        f"the workers changed ({workers}) at the same global batch of {now.global_batch} images,"
        " so every step covers the same images"
    )


@dataclass
class RunState:
    """One checkpoint's record of the run."""

    position: Position
    reason: CheckpointReason
    finished: bool
    optimizer_phase: int  # the phase whose optimizer the checkpoint holds; -1 for none
    data: DataOrder
    best: BestMetric | None = None
    train_seconds: float = 0.0  # spent training, over every resumption
    epoch_stats: list[float] = field(default_factory=lambda: [0.0] * NUM_STATS)  # mid-epoch sums
    model_names: list[str] = field(default_factory=list)
    time: float = field(default_factory=time.time)  # when it was written
    patience: Patience | None = None  # early stopping in the phase of `position`

    @property
    def global_step(self) -> int:
        return self.position.global_step

    @property
    def has_optimizer(self) -> bool:
        """Whether the checkpoint holds the optimizer of the phase it resumes in."""
        return self.optimizer_phase == self.position.phase

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        if record["patience"] is None:
            del record["patience"]
        return {"version": STATE_VERSION, **record.pop("position"), **record}

    @classmethod
    def from_json(cls, record: dict[str, Any], where: str) -> RunState:
        """The state of a JSON record: CheckpointError (naming `where`) for another version,
        KeyError, TypeError or ValueError for a record that is incomplete."""
        if record.get("version") != STATE_VERSION:
            raise CheckpointError(
                f"checkpoints in {where} are from another distxfer version (state version"
                f" {record.get('version')}, this one reads {STATE_VERSION}); use a new"
                " output.run_dir"
            )
        best, patience = record.get("best"), record.get("patience")
        return cls(
            position=Position(*(int(record[k]) for k in ("phase", "epoch", "step", "global_step"))),
            reason=record["reason"],
            finished=bool(record["finished"]),
            optimizer_phase=int(record["optimizer_phase"]),
            data=DataOrder(**record["data"]),
            best=BestMetric(**best) if best else None,
            train_seconds=float(record.get("train_seconds", 0.0)),
            epoch_stats=[float(x) for x in record.get("epoch_stats", [0.0] * NUM_STATS)],
            model_names=list(record.get("model_names", [])),
            time=float(record.get("time", 0.0)),
            patience=Patience(**patience) if patience else None,
        )
