"""Find a run's processes by what is on their command line, and their ranks by their environment.

Fault tests kill, stop or signal one rank of a real launch: they find it through /proc (the run
directory they chose is on every worker's command line; the rank is in the variables its
launcher set, read as distxfer reads them) and check afterwards that none is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from distxfer.engines.detect import detect_launch


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def state(pid: int) -> str:
    """The process state letter (R, S, T, Z, ...); "" if it is gone."""
    stat = _read(Path(f"/proc/{pid}/stat")).decode(errors="replace")
    return stat.rsplit(")", 1)[1].split()[0] if ")" in stat else ""


def alive(pid: int) -> bool:
    """Running or stopped, not a zombie waiting to be reaped."""
    return state(pid) not in ("", "Z", "X")


def with_marker(marker: str) -> list[int]:
    """Live processes (other than this one) whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if marker.encode() in _read(entry / "cmdline") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def is_training_worker(pid: int) -> bool:
    """A Python process running distxfer (not a launcher, nor the shell that started it)."""
    argv = _read(Path(f"/proc/{pid}/cmdline")).split(b"\0")
    head = b" ".join(argv[:3])
    return b"python" in argv[0] and (b"distxfer" in head or b"train_worker" in head)


def ranks(marker: str) -> dict[int, int]:
    """rank -> pid of the training workers whose command line contains `marker`."""
    found = {}
    for pid in with_marker(marker):
        if not is_training_worker(pid):
            continue
        raw = _read(Path(f"/proc/{pid}/environ")).split(b"\0")
        env = dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)
        launch = detect_launch(env)
        if launch.launcher != "none":
            found[launch.rank] = pid
    return found


def wait_for_ranks(marker: str, count: int, timeout: float = 120) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ranks(marker)
        if len(found) == count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{count} ranks with {marker!r} did not start: {ranks(marker)}")


def wait_gone(marker: str, timeout: float = 20) -> list[int]:
    """Processes with `marker` still alive after `timeout` seconds ([] once all are gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and with_marker(marker):
        time.sleep(0.1)
    return with_marker(marker)
