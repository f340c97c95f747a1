"""TF_CONFIG for MultiWorkerMirroredStrategy, so nobody writes it by hand.

Under an MPI launcher (mpirun, or srun --mpi=pmix) each process picks a free port on its host and
the host:port list is exchanged with mpi4py. Under srun without MPI the list is derived from
Slurm's variables: the step's node list, tasks per node (block distribution), and a port per
local task from a base derived from the job id (override with DISTXFER_PORT_BASE).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping

from distxfer.engines.detect import Launch
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
            f"engine multiworker needs TF_CONFIG, or to be started by mpirun or srun (found {launch.launcher});"
            " use launch/multiworker_local.sh on one machine"
        )
    env["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": launch.rank}}
    )
    return how


def free_port(host: str = "") -> int:
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
    return list(MPI.COMM_WORLD.allgather(f"{host}:{free_port()}"))


def workers_from_slurm(env: Mapping[str, str]) -> list[str]:
    distribution = env.get("SLURM_DISTRIBUTION", "block")
    if not distribution.startswith("block"):
        raise EngineError(
            f"srun --distribution={distribution} puts tasks on nodes in an order distxfer cannot derive;"
            " use --distribution=block, or launch with --mpi=pmix so addresses are exchanged with mpi4py"
        )
    hosts = expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
    counts = tasks_per_node(
        env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "1")
    )
    if len(counts) == 1 and len(hosts) > 1:
        counts = counts * len(hosts)
    if len(hosts) != len(counts):
        raise EngineError(
            f"Slurm lists {len(hosts)} nodes but tasks for {len(counts)}; set TF_CONFIG yourself"
        )
    base = int(env.get("DISTXFER_PORT_BASE") or 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    return [
        f"{host}:{base + local}" for host, count in zip(hosts, counts) for local in range(count)
    ]


def tasks_per_node(text: str) -> list[int]:
    """Slurm's compressed count list, e.g. "2(x3),1" -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise EngineError(
                f"cannot read Slurm's tasks per node {text!r}; set TF_CONFIG yourself"
            )
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list, e.g. "gpu[01-03,07],login" -> gpu01 gpu02 gpu03 gpu07 login."""
    hosts: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", text):
        if plain:
            hosts.append(plain.strip())
            continue
        for item in ranges.split(","):
            first, _, last = item.partition("-")
            width = len(first)
            hosts += [f"{prefix}{n:0{width}d}" for n in range(int(first), int(last or first) + 1)]
    return [h for h in hosts if h]
