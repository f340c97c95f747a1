"""TF_CONFIG for MultiWorkerMirroredStrategy, so nobody writes it by hand.

Under an MPI launcher (mpirun, or srun --mpi=pmix) each process picks a free port on its host and
the host:port list is exchanged with mpi4py. Under srun without MPI the list is derived from
Slurm's variables (`distxfer.engines.slurm.workers_from_slurm`).
"""

from __future__ import annotations

import json
import os
import socket

from distxfer.engines.detect import Launch
from distxfer.engines.slurm import workers_from_slurm
from distxfer.errors import EngineError


def ensure_tf_config(launch: Launch, env: dict[str, str] | None = None) -> str:
    """Set TF_CONFIG in the environment if it is missing; return where it came from."""
    env = os.environ if env is None else env
    if env.get("TF_CONFIG"):
        return "TF_CONFIG from the environment"
    if launch.size <= 1:
        return "a single worker (no TF_CONFIG)"
    if launch.launcher == "mpirun" or (launch.launcher == "srun" and "PMIX_RANK" in env):
        workers = exchange_with_mpi()
        how = f"TF_CONFIG built from {launch.launcher} with mpi4py"
    elif launch.launcher == "srun":
        workers = workers_from_slurm(env)
        how = "TF_CONFIG built from Slurm's variables"
    else:
        raise EngineError(
            "engine multiworker needs TF_CONFIG, or to be started by mpirun or srun (found"
            f" {launch.launcher}); use launch/multiworker_local.sh on one machine"
        )
    env["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": launch.rank}}
    )
    return how


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the probe binds that address only, never all of them)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def exchange_with_mpi() -> list[str]:
    try:
        from mpi4py import MPI
    except ImportError:
        raise EngineError(
            "engine multiworker under mpirun needs mpi4py to exchange worker addresses;"
            " install it (pip install 'distxfer[mpi]') or set TF_CONFIG yourself"
        ) from None
    host = os.environ.get("DISTXFER_WORKER_HOST") or socket.gethostname()
    return list(MPI.COMM_WORLD.allgather(f"{host}:{free_port(host)}"))
