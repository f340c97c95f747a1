"""Stop signals: a SIGTERM or SIGUSR1 that comes while a run starts up is not lost, and one that
comes after training does not kill the process."""

from __future__ import annotations

import os
import signal

import pytest

from distxfer.train import stopping
from distxfer.train.stopping import STOP_SIGNALS, StopRequest, hold_stop_signals


@pytest.fixture
def held():
    """hold_stop_signals() for one test; Python's handlers are back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    hold_stop_signals()
    yield
    stopping._held.clear()
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_during_start_up_stops_the_run_at_its_first_check(held):
    os.kill(os.getpid(), signal.SIGUSR1)  # without the hold, this process would end here
    request = StopRequest()
    request.install()
    request.uninstall()
    assert request.signal_name == "SIGUSR1"


def test_a_signal_after_training_leaves_the_process_running(held):
    request = StopRequest()
    request.install()
    request.uninstall()
    os.kill(os.getpid(), signal.SIGTERM)
    assert request.signal_name is None
    assert signal.getsignal(signal.SIGTERM) is stopping._hold
