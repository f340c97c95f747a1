"""A run's state in `<run_dir>/status.json`: running, preempted, finished or failed, and where.

The chief of `distxfer train` writes it when the run starts and when it ends, so `distxfer runs`
can tell a run that is training from one that stopped; checkpoints alone cannot tell a running
run from a crashed one. Under Slurm it records the job, so a run whose job has gone while it was
"running" can be shown as failed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from distxfer.atomic import write_bytes

STATUS_FILE = "status.json"
STATES = ("running", "preempted", "finished", "failed")


def write_status(run_dir: Path, state: str, **details: Any) -> None:
    """Record `state` (one of STATES) with this process's host, pid and Slurm job."""
    assert state in STATES, state
    record = {
        "state": state,
        "time": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
        **details,
    }
    write_bytes(Path(run_dir) / STATUS_FILE, (json.dumps(record, indent=1) + "\n").encode())


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The recorded status, or None where there is none (or it is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("state") in STATES else None
