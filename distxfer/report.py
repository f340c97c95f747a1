"""Evaluation reports: per-class precision and recall, balanced accuracy, the confusion matrix as a
figure, JSON and Markdown."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from distxfer.atomic import write_bytes


def per_class(confusion: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a [true, predicted] count matrix."""
    rows = []
    for i, name in enumerate(class_names):
        tp = float(confusion[i, i])
        predicted, actual = float(confusion[:, i].sum()), float(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "class": name,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": int(actual),
            }
        )
    return rows


def balanced_accuracy(confusion: np.ndarray) -> float:
    """The mean of the per-class recalls over the classes present: accuracy as if every class had
    as many samples (chance level is 1 / classes however imbalanced the split)."""
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def build_report(
    metrics: dict[str, float], confusion: np.ndarray, class_names: list[str], **extra: Any
) -> dict[str, Any]:
    metrics = dict(metrics)
    metrics.setdefault("balanced_accuracy", balanced_accuracy(confusion))
    return {
        **extra,
        "metrics": metrics,
        "samples": int(confusion.sum()),
        "classes": class_names,
        "per_class": per_class(confusion, class_names),
        "confusion_matrix": confusion.astype(int).tolist(),
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {report.get('split', 'data')}", ""]
    for key in ("run_dir", "checkpoint", "data_dir"):
        if report.get(key):
            lines.append(f"- {key.replace('_', ' ')}: `{report[key]}`")
    lines.append(f"- samples: {report['samples']}")
    lines += [f"- {name}: {value:.4f}" for name, value in report["metrics"].items()]
    lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f}"
        f" | {r['support']} |"
        for r in report["per_class"]
    ]
    lines += [
        "",
        "Confusion matrix (rows: true class, columns: predicted): `confusion_matrix.png`",
        "",
    ]
    return "\n".join(lines)


def confusion_png(
    confusion: np.ndarray, class_names: list[str], title: str = "Confusion matrix"
) -> bytes:
    """The confusion matrix as a labelled heat map (row-normalised colours, counts in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(size, size), dpi=80)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(
        confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0
    )
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        int(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(directory: Path, report: dict[str, Any], stem: str) -> Path:
    """Write `<stem>.json`, `<stem>.md` and `<stem>_confusion_matrix.png`; each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(report["confusion_matrix"])
    png = confusion_png(
        confusion, report["classes"], title=f"Confusion matrix: {report.get('split', '')}"
    )
    markdown = render_markdown(report).replace(
        "`confusion_matrix.png`", f"`{stem}_confusion_matrix.png`"
    )
    for name, data in (
        (f"{stem}.json", json.dumps(report, indent=2).encode()),
        (f"{stem}.md", markdown.encode()),
        (f"{stem}_confusion_matrix.png", png),
    ):
        write_bytes(directory / name, data)
    return directory / f"{stem}.md"
