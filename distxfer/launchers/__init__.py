"""How distxfer's processes are started: each launch recipe written once, and a supervisor.

A recipe takes the PROGRAM to run (an argv list: `distxfer train ...`, a benchmark worker, a test
worker) and returns the processes to start, each an argv plus extra environment:

- `horovodrun`: `horovodrun [--gloo|--mpi] -np N -H HOSTS PROGRAM` (it starts the ranks)
- `mpirun`: OpenMPI's `mpirun -np N --bind-to none --map-by slot --tag-output -x ... PROGRAM`
- `tf_config_workers`: N processes on this machine, each with TF_CONFIG on loopback ports
- `mirrored`: the one MirroredStrategy process

`supervise` starts them and waits: several processes get their output lines prefixed
`[worker i] `; each runs in its own process group; when one fails the others are stopped
(SIGTERM, then SIGKILL after a grace period) and its status is returned; SIGTERM, SIGINT, SIGUSR1
and SIGHUP are forwarded to every process group, so a preemption signal reaches the workers.

`supervise` lives in `supervise.py`; `python -m distxfer.launchers RECIPE [options]
(-- PROGRAM... | TRAIN_ARGS...)` (`__main__.py`) is what the launch/*.sh scripts run. Nothing
here imports TensorFlow, Keras or Horovod. Slurm batch scripts (sbatch, requeue on preemption,
sweeps as array jobs) are written by `distxfer.slurm`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GRACE_SECONDS = 10.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
# What mpirun passes to every rank (also on other hosts), when it is set.
MPI_EXPORTS = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: its argv, and environment added to the supervisor's."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command_line(self) -> str:
        """The shell-quoted command, environment assignments first (`TF_CONFIG=... prog ...`)."""
        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.env.items()]
        return " ".join([*assignments, *(shlex.quote(arg) for arg in self.argv)])


# -- devices and defaults -------------------------------------------------------------------------


def gpu_count() -> int:
    """GPUs `nvidia-smi -L` lists (0 without nvidia-smi, or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU"))


def default_np() -> int:
    """One process per GPU; 2 on a CPU-only machine, to try things out."""
    return gpu_count() or 2


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free TCP ports on `host` (all held open until every one is chosen)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def sibling_or_path(name: str) -> str:
    """`name` next to this Python (its environment's copy), else on PATH, else the bare name."""
    sibling = Path(sys.executable).with_name(name)
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which(name) or name


# -- recipes --------------------------------------------------------------------------------------


def horovodrun(
    program: Sequence[str], *, n: int, hosts: str | None = None, controller: str | None = None
) -> list[ProcessSpec]:
    """`horovodrun [--gloo|--mpi] -np N -H HOSTS PROGRAM`; HOSTS defaults to `localhost:N`."""
    if controller not in (None, "gloo", "mpi"):
        raise ValueError(f"horovodrun controller must be gloo or mpi, not {controller!r}")
    mode = [f"--{controller}"] if controller else []
    argv = [sibling_or_path("horovodrun"), *mode, "-np", str(n), "-H", hosts or f"localhost:{n}"]
    return [ProcessSpec([*argv, *program])]


def mpirun(
    program: Sequence[str],
    *,
    n: int,
    hosts: str | None = None,
    oversubscribe: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[ProcessSpec]:
    """OpenMPI's mpirun, every output line tagged with its rank (`[1,R]<stdout>:`).

    The variables of MPI_EXPORTS that are set in `env` (default: this process's environment,
    which should be the one the supervisor gives mpirun) are exported to every rank.
    """
    env = os.environ if env is None else env
    argv = ["mpirun", "-np", str(n), "--bind-to", "none", "--map-by", "slot", "--tag-output"]
    for name in MPI_EXPORTS:
        if name in env:
            argv += ["-x", name]
    if oversubscribe:
        argv.append("--oversubscribe")
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    if hosts:
        argv += ["-H", hosts]
    return [ProcessSpec([*argv, *program])]


def tf_config_workers(
    program: Sequence[str], *, n: int, host: str = "127.0.0.1"
) -> list[ProcessSpec]:
    """N local MultiWorkerMirroredStrategy workers, each with TF_CONFIG on free `host` ports."""
    workers = [f"{host}:{port}" for port in free_ports(n, host)]
    return [
        ProcessSpec(
            list(program),
            {
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}},
                    separators=(",", ":"),
                )
            },
        )
        for index in range(n)
    ]


def mirrored(program: Sequence[str]) -> list[ProcessSpec]:
    """The one MirroredStrategy process. PROGRAM names the engine and, on a CPU, the replicas:
    `train_program("mirrored", ..., cpu_replicas=N)` adds them to `distxfer train` without GPU."""
    return [ProcessSpec(list(program))]


def train_program(
    engine: str,
    train_args: Sequence[str],
    *,
    distxfer: str | None = None,
    cpu_replicas: int | None = None,
) -> list[str]:
    """`distxfer train engine.name=ENGINE TRAIN_ARGS`, as the launch/ scripts run it.

    With `cpu_replicas` and no GPU, `engine.cpu_replicas=N` comes right after the engine, so an
    override among TRAIN_ARGS still wins.
    """
    no_gpu = cpu_replicas is not None and not gpu_count()
    extra = [f"engine.cpu_replicas={cpu_replicas}"] if no_gpu else []
    command = distxfer or sibling_or_path("distxfer")
    return [command, "train", f"engine.name={engine}", *extra, *train_args]


# The supervisor, beside the recipes it starts (it imports ProcessSpec from here).
from distxfer.launchers.supervise import supervise  # noqa: E402

__all__ = [
    "ProcessSpec",
    "default_np",
    "free_ports",
    "gpu_count",
    "horovodrun",
    "mirrored",
    "mpirun",
    "sibling_or_path",
    "supervise",
    "tf_config_workers",
    "train_program",
]
