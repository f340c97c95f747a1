"""When to stop early, agreed by every rank at the same step.

SIGTERM and SIGUSR1 (what Slurm sends before a time limit or preemption) only set a flag; the
loop asks at fixed step boundaries whether ANY rank wants to stop (one tiny collective), so all
ranks checkpoint the same step and leave together. A second signal (e.g. Ctrl-C twice) is not
intercepted: SIGINT keeps Python's default. `hold_stop_signals` (the CLI calls it first) keeps a
signal that comes while the run starts up, or after it has trained, from killing the process: one
before training stops it at its first step boundary, one after is ignored. A wall-clock budget
(`max_train_seconds`) works the same way but counts as a normal end: the run checkpoints and goes
on to its final evaluation.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

import numpy as np

from distxfer.engines import Engine
from distxfer.train.state import Outcome

EXIT_PREEMPTED = (
    75  # EX_TEMPFAIL: stopped on request with a checkpoint; run the same command to resume
)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_held: list[str] = []  # stop signals that came while no StopRequest listened


def hold_stop_signals() -> None:
    """Remember SIGTERM and SIGUSR1 from now on instead of dying of them; the next
    `StopRequest.install` takes the one that came first."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _hold)


def _hold(signum: int, _frame: FrameType | None) -> None:
    _held.append(signal.Signals(signum).name)


class StopRequest:
    """Collects local reasons to stop; `agree` turns them into one decision for all ranks."""

    def __init__(self, max_seconds: float = 0.0) -> None:
        self.max_seconds = max_seconds
        self.started: float | None = None  # when `install` started the clock
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Start listening for stop signals and start the time budget's clock."""
        self.started = time.monotonic()
        if _held:
            self.signal_name = _held[0]
            _held.clear()
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def elapsed(self) -> float:
        """Seconds since `install` (0 before it)."""
        return time.monotonic() - self.started if self.started is not None else 0.0

    def out_of_time(self) -> bool:
        return bool(self.max_seconds) and self.elapsed() >= self.max_seconds

    def agree(self, engine: Engine) -> Outcome | None:
        """SIGNAL, TIME or None, the same on every rank (a collective when size > 1)."""
        flags = [float(self.signal_name is not None), float(self.out_of_time())]
        if engine.size > 1:
            flags = list(engine.all_sum([np.array(flags, dtype=np.float32)])[0])
        if flags[0] > 0:
            return Outcome.SIGNAL
        if flags[1] > 0:
            return Outcome.TIME
        return None
