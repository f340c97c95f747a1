"""The demo's report: its three runs side by side in a table and in one plot of validation
accuracy against training time, read back from each run's TensorBoard events.

Training time is the runs' own clock (`epoch_train_seconds`, the seconds spent training so far,
which the scratch run's `max_train_seconds` budget is measured in), so the plot shows what the
comparison is about: the same model on the same target data for the same time.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from distxfer.config import Config

RUNS = ("source", "transfer", "scratch")
PLOT = "demo_accuracy.png"


@dataclass(frozen=True)
class RunResult:
    """One demo run: its final accuracy (and on which split) and its validation history."""

    name: str
    split: str
    accuracy: float
    seconds: float  # training time in total
    history: list[tuple[float, float]]  # (training seconds, validation accuracy) per epoch


def read_run(run_dir: Path, seconds: float) -> RunResult:
    """The final evaluation (test if there is one, else validation) and history of a run."""
    reports = {name: run_dir / "eval" / f"{name}.json" for name in ("test", "validation")}
    split, path = next((name, p) for name, p in reports.items() if p.exists())
    accuracy = json.loads(path.read_text())["metrics"]["accuracy"]
    return RunResult(run_dir.name, split, accuracy, seconds, _history(run_dir / "tensorboard"))


def _history(tensorboard: Path) -> list[tuple[float, float]]:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    def scalars(folder: Path, tag: str) -> dict[int, float]:
        events = event_accumulator.EventAccumulator(str(folder), size_guidance={"tensors": 0})
        events.Reload()
        if tag not in events.Tags().get("tensors", []):
            return {}
        values = events.Tensors(tag)
        return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in values}

    seconds = scalars(tensorboard / "train", "epoch_train_seconds")
    accuracy = scalars(tensorboard / "validation", "epoch_accuracy")
    return sorted((seconds[step], accuracy[step]) for step in accuracy if step in seconds)


def accuracy_plot(results: dict[str, RunResult], chance: float) -> bytes:
    """PNG: validation accuracy against training seconds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=90)
    labels = {
        "source": "source task (pretraining)",
        "transfer": "target: transfer",
        "scratch": "target: from scratch",
    }
    for name, result in results.items():
        if result.history:
            x, y = zip(*result.history)
            ax.plot(x, y, marker=".", label=labels[name])
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="target chance")
    ax.set(xlabel="training time (s)", ylabel="validation accuracy", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render(
    run_dir: Path,
    results: dict[str, RunResult],
    transfer: Config,
    classes: int,
    source_classes: int,
) -> str:
    """The Markdown report: the table, the plot beside it, and where everything is."""
    height, width = transfer.data.image_hw
    src, xfer, scr = (results[name] for name in RUNS)
    lines = [
        "# distxfer demo: transfer learning on built-in shapes",
        "",
        f"Backbone: {transfer.model.backbone} {transfer.model.backbone_args or ''} at "
        f"{height}x{width}; target chance level {1 / classes:.0%}.",
        "",
        "| run | task | how | time | accuracy |",
        "|---|---|---|---|---|",
        f"| source | {source_classes} source shapes | from scratch | {src.seconds:.0f} s | "
        f"{src.accuracy:.1%} ({src.split}) |",
        f"| transfer | {classes} target shapes | source run's backbone, head then fine-tune |"
        f" {xfer.seconds:.0f} s | **{xfer.accuracy:.1%}** ({xfer.split}) |",
        f"| scratch | {classes} target shapes | same model, random weights, same time |"
        f" {scr.seconds:.0f} s | **{scr.accuracy:.1%}** ({scr.split}) |",
        "",
        f"![validation accuracy against training time]({PLOT})",
        "",
        "Runs (checkpoints, evaluation reports, TensorBoard) are in"
        f" {run_dir}/{{source,transfer,scratch}}.",
        f"Watch them: tensorboard --logdir {run_dir}",
        f"Evaluation report of the transfer run: {run_dir / 'transfer' / 'eval' / 'test.md'}",
        f"Classify images: distxfer predict {run_dir / 'transfer'} IMAGES_OR_FOLDERS",
    ]
    return "\n".join(lines) + "\n"
