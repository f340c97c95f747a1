"""What every benchmark shares: the machine and versions it ran on, interleaved repeats with
medians, and its results as a printed table and a JSON file.

Timings on a shared machine are noisy, so a benchmark measures every configuration once per
round, several rounds in turn, and reports medians and ratios of medians from the same run;
the load average before and after is part of the output, as is the warning that the machine
may be shared. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

SHARED_NOTE = (
    "timings are medians of interleaved rounds; the machine may be shared with other work, "
    "so compare the ratios (measured side by side) rather than absolute figures"
)


def machine() -> dict[str, Any]:
    """The CPU, core count, memory and load average of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    """Versions of the packages that decide the figures (distribution metadata: no imports)."""
    found = {"python": platform.python_version()}
    for name in ("distxfer", "tensorflow", "tensorflow-cpu", "keras", "horovod", "tf_keras"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleaved(
    measurements: dict[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Each measurement once per round, in turn, for `rounds` rounds: every sample of one
    configuration sees the same mix of background load as the others'."""
    samples: dict[str, list[float]] = {key: [] for key in measurements}
    for _ in range(rounds):
        for key, measure in measurements.items():
            samples[key].append(measure())
    return samples


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (it reads as plain text too)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def header(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The opening of a benchmark's report, printed at once; returned for the JSON file."""
    info = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "versions": versions(),
        "settings": settings,
        "note": SHARED_NOTE,
    }
    m = info["machine"]
    print(
        f"distxfer bench {name}: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB,"
        f" load average {m['load_average']}",
        flush=True,
    )
    print(
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        flush=True,
    )
    print(f"note: {SHARED_NOTE}", flush=True)
    return info


def write_json(path: str | os.PathLike, info: dict[str, Any], results: Any) -> Path:
    """The report as JSON (machine, versions, settings, results, load at the end)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {**info, "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    out.write_text(json.dumps({**info, "results": results}, indent=1) + "\n")
    print(f"results written to {out}", flush=True)
    return out


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark's worker process: this distxfer first on its path."""
    import distxfer

    here = str(Path(distxfer.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def quiet_worker() -> None:
    """A benchmark process that imports TensorFlow: keep its start-up chatter out of the table."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from distxfer.logs import quiet_tensorflow

    quiet_tensorflow()
