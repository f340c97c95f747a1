"""TensorBoard output is secondary: a write that fails stops it with a warning, not the run."""

from __future__ import annotations

import logging
import types

from distxfer.config import load_config
from distxfer.tensorboard import TensorBoardHook


class FullDisk:
    def as_default(self):  # what a summary writer on a full disk does when written to
        raise OSError(28, "No space left on device")

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_a_failed_tensorboard_write_stops_tensorboard_output_and_training_goes_on(tmp_path, caplog):
    hook = TensorBoardHook(tmp_path / "tensorboard", load_config("configs/mnist_mlp.yaml", []))
    hook.train = FullDisk()
    trainer = types.SimpleNamespace(position=types.SimpleNamespace(global_step=5))
    with caplog.at_level(logging.WARNING, logger="distxfer.tensorboard"):
        hook.on_log(trainer, {"loss": 1.0})  # does not raise
        hook.on_log(trainer, {"loss": 0.5})  # and is not tried again
    assert hook.failed
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "TensorBoard output stopped: could not write to" in warnings[0]
    assert "No space left on device" in warnings[0] and "training goes on" in warnings[0]
