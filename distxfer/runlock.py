"""One training run per run directory at a time: a lock file the chief holds while it trains.

`<run_dir>/.lock` is locked with flock(2), which the kernel releases when its holder ends,
however it ends: a killed or crashed run leaves the file behind, and the next run simply takes
the lock over. The file records who holds it (pid, host, start time), so a second run can say
which one is in its way. Over NFS, flock works where the server has locking (NLM) enabled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from distxfer.errors import ConfigError

LOCK_NAME = ".lock"


class RunLock:
    """The lock of one run directory; `acquire` raises ConfigError if another run holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"output.run_dir {self.path.parent} is in use by another training run"
                f" ({holder}); wait for it to finish or stop it, or use another output.run_dir"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
