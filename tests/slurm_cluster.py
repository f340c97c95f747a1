"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd as child processes.

Everything lives in a temporary directory: a private slurm.conf (clients find it through
SLURM_CONF), spool, state, logs, and free ports, so nothing in /etc/slurm is touched and a cluster
someone else runs on the standard ports is left alone. Needs root and Debian's slurmctld, slurmd,
slurm-client and munge packages (launch/setup.sh installs them); facts in ../shared/SLURM.md.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from distxfer.engines.tfconfig import free_port

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the test cluster (no root, or the packages are missing)."""


def cluster_or_skip(root: Path):  # type: ignore[no-untyped-def]
    """A started cluster in `root`, stopped when the generator closes; skips the tests where
    Slurm cannot run here (for a module-scoped pytest fixture: `yield from cluster_or_skip(p)`)."""
    import pytest

    try:
        running = SlurmCluster(root).start()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))
    yield running
    running.stop()


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.processes: list[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> SlurmCluster:
        missing = [
            b
            for b in ("slurmctld", "slurmd", "srun", "sinfo", "munged", "munge")
            if not shutil.which(b)
        ]
        if os.geteuid() != 0 or missing:
            raise SlurmUnavailable(
                f"needs root and {', '.join(missing) or 'nothing else'};"
                " run launch/setup.sh as root"
            )
        self._start_munge()
        for sub in ("ctld", "d", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        for daemon in ("slurmctld", "slurmd"):
            log = open(self.root / "log" / f"{daemon}.out", "w")  # noqa: SIM115 - closed with the process
            self.processes.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(self.conf)],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        self._wait_until(
            lambda: self.sinfo_state() == "idle", timeout, "the node did not become idle"
        )
        return self

    def _start_munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged is already serving the default socket
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(
                ["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True
            )
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["munged", "--force"], check=True, capture_output=True
        )  # daemonizes; left for later runs
        self._wait_until(
            lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0,
            20,
            "munged did not start",
        )

    def _config(self) -> str:
        probe = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        fields = dict(re.findall(r"(\w+)=(\S+)", probe.splitlines()[0]))
        cpus, memory = int(fields["CPUs"]), int(fields["RealMemory"]) * 95 // 100
        return "\n".join(
            [
                "ClusterName=distxfertest",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                "AuthInfo=cred_expire=10",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                f"StateSaveLocation={self.root / 'ctld'}",
                f"SlurmdSpoolDir={self.root / 'd'}",
                f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                f"DefMemPerCPU={memory // cpus}",
                "SchedulerParameters=bf_interval=2,sched_interval=2",
                "MpiDefault=none",
                "ReturnToService=2",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "SlurmctldTimeout=30",
                "SlurmdTimeout=30",
                "InactiveLimit=0",
                "KillWait=10",
                "Waittime=0",
                f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory}"
                " State=UNKNOWN",
                f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def sinfo_state(self) -> str:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True
        )
        return out.stdout.strip()

    def srun(
        self, *args: str, timeout: float = 400, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["srun", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sbatch(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        """Submit a batch job (`sbatch ARGS`); its job id."""
        out = subprocess.run(
            ["sbatch", "--parsable", *args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as fields (JobState, Restarts, ExitCode, ...); {} once forgotten."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id], env=self.env, capture_output=True, text=True
        )
        return dict(re.findall(r"(\w+)=(\S*)", out.stdout.splitlines()[0])) if out.stdout else {}

    def wait_for_job(self, job_id: str, timeout: float = 300) -> dict[str, str]:
        """Until the job has ended (not pending, running or being requeued); its fields."""
        active = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState", "PENDING") not in active:
                return info
            time.sleep(0.5)
        subprocess.run(["scancel", job_id], env=self.env)
        raise TimeoutError(f"job {job_id} still {self.job(job_id).get('JobState')}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def log_tail(self) -> str:
        return "\n".join(
            (p.read_text()[-2000:] if p.exists() else "") for p in (self.root / "log").iterdir()
        )

    def _wait_until(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.2)
        raise RuntimeError(f"{what}:\n{self.log_tail()}")
