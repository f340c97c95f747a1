"""`distxfer data inspect`: what a dataset folder holds, before anyone trains on it.

For a class-folder dataset: images per class, image kinds (by content, not extension: a
.jpg that is really a PNG counts as png), and the bad files the quick scan finds, with the
reason for each. For a TFRecord folder: what its meta.json records. Pure Python.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from distxfer.data.listing import list_class_folder
from distxfer.data.recordmeta import is_record_folder, read_meta
from distxfer.data.scan import scan_files
from distxfer.data.splits import BadFile


@dataclass(frozen=True)
class InspectReport:
    """What `inspect_folder` found."""

    path: str
    layout: str  # "class folders" or "tfrecords"
    class_counts: dict[str, int]  # images (or training records) per class, in class order
    kinds: dict[str, int] = field(default_factory=dict)  # e.g. {"jpeg": 90, "png 16-bit rgb": 2}
    bad: list[BadFile] = field(default_factory=list)
    total_bytes: int = 0
    record_splits: dict[str, int] = field(default_factory=dict)  # split -> records

    @property
    def total(self) -> int:
        return sum(self.class_counts.values())


def inspect_folder(path: str, *, follow_links: bool = False) -> InspectReport:
    """Count, classify and quick-scan the images of a dataset folder."""
    if is_record_folder(path):
        meta = read_meta(path)
        per_class = meta["splits"].get("train", {}).get("class_counts") or [0] * len(
            meta["class_names"]
        )
        return InspectReport(
            path=path,
            layout="tfrecords",
            class_counts={n: int(c) for n, c in zip(meta["class_names"], per_class, strict=True)},
            bad=[BadFile(p, r) for p, r in meta.get("skipped", [])],
            record_splits={name: int(s["count"]) for name, s in meta["splits"].items()},
        )
    class_names, listed = list_class_folder(
        path, follow_links=follow_links, key="folder", allow_empty=True
    )
    checks = scan_files(listed.paths)
    kinds = Counter(f"{c.kind} {c.detail}".strip() for c in checks if not c.problem)
    counts = listed.class_counts(len(class_names))
    return InspectReport(
        path=path,
        layout="class folders",
        class_counts={name: int(n) for name, n in zip(class_names, counts, strict=True)},
        kinds=dict(kinds.most_common()),
        bad=[c.as_bad_file() for c in checks if c.problem],
        total_bytes=int(listed.sizes.clip(min=0).sum()),
    )


def render_report(report: InspectReport, *, max_bad: int = 20) -> str:
    """The report as plain text for a terminal."""
    lines = [f"{report.path} ({report.layout})"]
    if report.layout == "tfrecords":
        lines.append(
            f"  {len(report.class_counts)} classes; training records per class: "
            + ", ".join(f"{name} {n}" for name, n in report.class_counts.items())
        )
        lines += [f"  {name}: {n} records" for name, n in report.record_splits.items()]
        if report.bad:
            lines.append(f"  {len(report.bad)} bad file(s) were skipped when converting")
        return "\n".join(lines)
    lines.append(
        f"  {report.total} images in {len(report.class_counts)} classes, "
        f"{report.total_bytes / 1e6:.1f} MB"
    )
    width = max(len(name) for name in report.class_counts)
    for name, n in report.class_counts.items():
        note = "  <- empty: training would stop; add images or remove the folder" if n == 0 else ""
        lines.append(f"    {name:<{width}}  {n:>7}{note}")
    if report.kinds:
        lines.append("  kinds: " + ", ".join(f"{kind} {n}" for kind, n in report.kinds.items()))
    if report.bad:
        lines.append(
            f"  {len(report.bad)} bad file(s); training stops on them unless data.bad_files=skip:"
        )
        lines += [
            f"    {os.path.relpath(b.path, report.path)} {b.reason}" for b in report.bad[:max_bad]
        ]
        if len(report.bad) > max_bad:
            lines.append(f"    ... and {len(report.bad) - max_bad} more")
    else:
        lines.append("  no bad files found by the quick scan")
    return "\n".join(lines)
