"""The run directory's lock (`distxfer.runlock`): held by one live process at a time, gone with
its holder however it ended, and tolerated by the run-directory check when it is all that a run
killed before writing its config left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from distxfer.config import load_config
from distxfer.errors import ConfigError
from distxfer.run import check_run_dir
from distxfer.runlock import LOCK_NAME, RunLock

HOLD = """
import sys, time
from distxfer.runlock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_held_by_a_live_process_refuses_and_is_free_once_that_process_is_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(
            ConfigError, match=f"is in use by another training run \\(pid {holder.pid} "
        ):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # the kernel let go of the killed holder's lock
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")


def test_a_dead_runs_lock_and_a_launchers_folder_do_not_make_a_run_directory_foreign(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "slurm").mkdir(parents=True)
    (run_dir / LOCK_NAME).write_text("pid 1 on elsewhere, since 2026-01-01 00:00:00\n")
    config = load_config("configs/mnist_mlp.yaml", [f"output.run_dir={run_dir}"])
    assert check_run_dir(run_dir, config, allow_config_change=False) is False  # a new run
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a distxfer run"):
        check_run_dir(run_dir, config, allow_config_change=False)
