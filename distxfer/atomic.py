"""Files and folders that appear whole or not at all: write beside the target, then rename over it.

    with replacing(run_dir / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)

Readers see the old version or the complete new one, never a half-written one; if the block
fails (or the process dies) the old version stays and the temporary is removed (or, after a
crash, left under a hidden `.NAME.tmp-*` name that writers clean up).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | Path, *, suffix: str = "", sync: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` that takes its place when the block succeeds.

    `suffix` keeps an extension a writer insists on (".keras", ".weights.h5"); `sync` flushes the
    file and the folder entry to disk before returning (checkpoints, meta files).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    old: Path | None = None
    try:
        yield tmp
        if sync and tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        if path.is_dir() and tmp.is_dir():  # a folder with contents cannot be renamed over
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
        if sync:
            fsync_dir(path.parent)
    finally:
        remove(tmp)
        if old is not None:
            remove(old)


def write_bytes(path: str | Path, data: bytes, *, sync: bool = False) -> None:
    with replacing(path, sync=sync) as tmp:
        tmp.write_bytes(data)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
