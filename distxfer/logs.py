"""Process logging: the chief tells the story; other ranks print only warnings and errors, prefixed.

Call `quiet_tensorflow()` before TensorFlow is imported (it only sets defaults the user has not
set), and `setup_logging(rank, log_file)` once the rank is known.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the user's terminal (override by setting it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*`build\\(\\)` was called on layer.*")


def setup_logging(rank: int = 0, log_file: Path | None = None, *, debug: bool = False) -> None:
    chief = rank == 0
    prefix = "" if chief else f"[rank {rank}] "
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"{prefix}%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("distxfer")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO if chief else logging.WARNING)
    root.propagate = False
    if chief and log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_file)
    if not chief:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
