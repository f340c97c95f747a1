"""Slurm's environment, read without TensorFlow: compressed host and count lists, worker addresses.

Slurm compresses lists: nodes as "gpu[01-03,07],login" and tasks per node as "2(x3),1". Under
srun without MPI, MultiWorkerMirroredStrategy's worker list is derived from them (block
distribution: tasks numbered node by node), with a port per local task from a base derived from
the job id (override with DISTXFER_PORT_BASE), so two jobs on one node do not collide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from distxfer.errors import EngineError


def step_tasks_per_node(env: Mapping[str, str]) -> list[int]:
    """Tasks on each node of this job step (the job's, outside a step)."""
    return tasks_per_node(
        env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "1")
    )


def tasks_on_this_node(env: Mapping[str, str]) -> int:
    """How many tasks of this step run on this process's node."""
    node = int(env.get("SLURM_NODEID", "0") or 0)
    counts = step_tasks_per_node(env)
    return counts[node] if node < len(counts) else 1


def workers_from_slurm(env: Mapping[str, str]) -> list[str]:
    """host:port of every task of the step, in rank order (block distribution only)."""
    distribution = env.get("SLURM_DISTRIBUTION", "block")
    if not distribution.startswith("block"):
        raise EngineError(
            f"srun --distribution={distribution} puts tasks on nodes in an order distxfer cannot"
            " derive; use --distribution=block, or launch with --mpi=pmix so addresses are"
            " exchanged with mpi4py"
        )
    hosts = expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
    counts = step_tasks_per_node(env)
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
