"""Early stopping per phase (`phases[].early_stopping`): when a phase stops, and on which weights.

At each epoch's end the loop hands `update` that epoch's metrics. They are global already (sums
over every rank, turned into metrics alike everywhere), so every rank makes the same decision at
the same epoch and no collective of its own is needed. The phase's best value and the epochs
waited since are part of every checkpoint (`RunState.patience`), so a preempted run resumes with
the patience it had left. With `restore_best`, the checkpoint written at the end of the phase's
best epoch is also linked as `checkpoints/phase_best.npz`; when the phase ends, early or not,
its weights are loaded (by `RunCheckpoints.restore_phase_best`), and the next phase starts from
them.
"""

from __future__ import annotations

import logging

from distxfer.config.schema import PhaseConfig
from distxfer.errors import ConfigError
from distxfer.train.state import Patience
from distxfer.train.steps import top_k_for

log = logging.getLogger(__name__)


class EarlyStopping:
    """One phase's early stopping; a phase without `early_stopping` never stops early."""

    def __init__(
        self, phase: PhaseConfig, index: int, num_classes: int, resumed: Patience | None = None
    ) -> None:
        self.phase, self.config = phase, phase.early_stopping
        self.state: Patience | None = None
        if self.config is None:
            return
        metric = self.config.metric
        if metric.endswith("top5_accuracy") and top_k_for(num_classes) != 5:
            raise ConfigError(
                f"phases.{phase.name}.early_stopping.metric: {metric} is only measured with more"
                f" than 5 classes and this data has {num_classes}; watch val_accuracy"
            )
        same_phase = resumed is not None and resumed.phase == index
        self.state = resumed if same_phase else Patience(index, metric)

    @property
    def stopped(self) -> bool:
        """Whether the phase ran out of patience (no more epochs)."""
        return self.state is not None and self.state.stopped

    @property
    def keeps_best(self) -> bool:
        """Whether the phase ends on the weights of its best epoch (`restore_best`)."""
        return self.config is not None and self.config.restore_best

    def update(self, metrics: dict[str, float], global_step: int) -> bool:
        """After an epoch whose checkpoint is at `global_step`: whether it is the phase's best so
        far (then its checkpoint must be kept as the phase best). Stops the phase once
        `patience` epochs in a row did not improve on the best by more than `min_delta`."""
        config, state = self.config, self.state
        if config is None or state is None:
            return False
        value = metrics[config.metric]
        if state.improves(value, config.min_delta):
            state.best, state.best_step, state.waited = value, global_step, 0
            return True
        state.waited += 1
        if state.waited >= config.patience:
            state.stopped = True
            log.info(
                "phase '%s' stops early: %s has not improved by more than %g for %d epoch(s);"
                " best %.4g at step %d%s",
                self.phase.name,
                config.metric,
                config.min_delta,
                state.waited,
                state.best,
                state.best_step,
                ", restoring its weights" if config.restore_best else "",
            )
        return False
