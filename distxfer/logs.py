"""Process logging: the chief tells the story; other ranks print only warnings and errors, prefixed.

The CLI calls `quiet_tensorflow()` before TensorFlow is imported (it only sets defaults the user
has not set) and `setup_logging(rank)` once, at start, with the rank the launcher gave. A
training run then copies the chief's log into its run directory with `log_to_file`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

LOGGER = "distxfer"


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the terminal (set the variable to override)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*`build\\(\\)` was called on layer.*")


def say(line: str) -> None:
    """Print `line` to stdout in one write with its newline. `print` makes two writes when
    Python is unbuffered (PYTHONUNBUFFERED), and `mpirun --tag-output` tags each write, so a
    printed line would end in a stray tag, or run into another rank's line."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def setup_logging(rank: int = 0, *, debug: bool = False) -> None:
    """Log to stderr: INFO and up on the chief, WARNING and up, prefixed `[rank N]`, elsewhere."""
    chief = rank == 0
    prefix = "" if chief else f"[rank {rank}] "
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"{prefix}%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger(LOGGER)
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO if chief else logging.WARNING)
    root.propagate = False
    if not chief:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)


@contextlib.contextmanager
def log_to_file(path: Path | None) -> Iterator[None]:
    """Also write distxfer's log to `path` (appending) inside the block; None writes nothing."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger(LOGGER)
    level = root.level
    if level == logging.NOTSET:  # called as a library, without setup_logging: keep the story
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
