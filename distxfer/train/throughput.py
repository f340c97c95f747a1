"""Throughput as the loop reports it: images per second in total and per replica, and the share
of step time the compiled step spent waiting for its input, per log interval and per epoch.

The compiled step adds up its own input-wait and step seconds (`TrainStep.timing`), which the
loop sums over every rank with the training statistics in the one all-reduce it already makes at
a log interval: measuring costs no extra host sync and no extra collective.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from distxfer.train.hooks import Hook
from distxfer.train.state import NUM_STATS
from distxfer.train.steps import COUNT

if TYPE_CHECKING:
    from distxfer.train.loop import Trainer

log = logging.getLogger(__name__)

WAIT, STEP = NUM_STATS, NUM_STATS + 1  # where the summed timing sits after the statistics
WAIT_WARNING = 0.10  # warn once when the step waits for input longer than this share
KNOBS = (
    "give each task more CPU cores, set data.cache: memory or disk, train a frozen phase"
    " without augmentation (the feature cache), or set data.augment_on: device"
)


@dataclass
class Window:
    """Where a measuring interval began."""

    started: float  # time.perf_counter()
    sums: np.ndarray  # the global training sums and timing then


class Throughput:
    """Intervals and epochs of one run's training, measured from the global sums."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.interval = self.epoch = Window(0.0, np.zeros(NUM_STATS + 2))

    def begin_epoch(self, sums: np.ndarray) -> None:
        self.interval = self.epoch = Window(time.perf_counter(), sums)

    def since_interval(self, sums: np.ndarray) -> dict[str, float]:
        """The figures since the last interval (which this call ends)."""
        figures = self._since(self.interval, sums)
        self.interval = Window(time.perf_counter(), sums)
        return figures

    def since_epoch(self, sums: np.ndarray) -> dict[str, float]:
        return self._since(self.epoch, sums)

    def _since(self, window: Window, sums: np.ndarray) -> dict[str, float]:
        seconds = max(time.perf_counter() - window.started, 1e-9)
        images = float(sums[COUNT] - window.sums[COUNT])
        waited, stepped = (float(sums[i] - window.sums[i]) for i in (WAIT, STEP))
        return {
            "images_per_second": images / seconds,
            "images_per_second_per_replica": images / seconds / self.replicas,
            "input_wait_share": waited / stepped if stepped > 0 else 0.0,
        }


class InputWaitWarning(Hook):
    """One warning, the first epoch the step waited for input longer than WAIT_WARNING of its
    time, naming what to turn."""

    def __init__(self) -> None:
        self.warned = False

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        share = metrics.get("input_wait_share", 0.0)
        if self.warned or share <= WAIT_WARNING:
            return
        self.warned = True
        log.warning(
            "the training step waited for its input %.0f%% of the time (%.0f images/s); to"
            " feed it faster, %s",
            100 * share,
            metrics.get("images_per_second", 0.0),
            KNOBS,
        )
