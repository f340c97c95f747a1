"""What the launcher told this process, read once from its environment, and the engine it implies.

horovodrun (gloo) sets HOROVOD_RANK; OpenMPI's mpirun sets OMPI_COMM_WORLD_*; MPICH/Hydra and
PMIx launchers set PMI_* / PMIX_RANK; Slurm's srun sets SLURM_PROCID within a job step;
a MultiWorkerMirroredStrategy worker has TF_CONFIG. `current_launch()` reads the process's own
environment once; the engine built from it answers every later "where am I" question.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from distxfer.engines.slurm import tasks_on_this_node
from distxfer.errors import EngineError


@dataclass(frozen=True)
class Launch:
    """This process's place among the processes its launcher started."""

    launcher: str  # horovodrun | mpirun | srun | tf_config | none
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1


def _int(env: Mapping[str, str], *names: str, default: int = 0) -> int:
    for name in names:
        if env.get(name, "").strip().lstrip("-").isdigit():
            return int(env[name])
    return default


@functools.cache
def current_launch() -> Launch:
    """This process's launch, detected from its environment once."""
    return detect_launch(os.environ)


def detect_launch(env: Mapping[str, str]) -> Launch:
    """The launch an environment describes (pure: tests pass their own mappings)."""
    if "HOROVOD_RANK" in env:
        return Launch(
            "horovodrun",
            _int(env, "HOROVOD_RANK"),
            _int(env, "HOROVOD_LOCAL_RANK"),
            _int(env, "HOROVOD_SIZE", default=1),
            _int(env, "HOROVOD_LOCAL_SIZE", default=1),
        )
    if "OMPI_COMM_WORLD_RANK" in env:
        return Launch(
            "mpirun",
            _int(env, "OMPI_COMM_WORLD_RANK"),
            _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
            _int(env, "OMPI_COMM_WORLD_SIZE", default=1),
            _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", default=1),
        )
    if ("PMI_RANK" in env or "PMIX_RANK" in env) and "SLURM_PROCID" not in env:
        return Launch(
            "mpirun",
            _int(env, "PMI_RANK", "PMIX_RANK"),
            _int(env, "MPI_LOCALRANKID"),
            _int(env, "PMI_SIZE", default=1),
            _int(env, "MPI_LOCALNRANKS", default=1),
        )
    if (
        "SLURM_PROCID" in env
        and "SLURM_STEP_ID" in env
        and _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", default=1) > 1
    ):
        return Launch(
            "srun",
            _int(env, "SLURM_PROCID"),
            _int(env, "SLURM_LOCALID"),
            _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", default=1),
            tasks_on_this_node(env),
        )
    if env.get("TF_CONFIG"):
        rank, size = tf_config_position(env["TF_CONFIG"])
        return Launch("tf_config", rank, 0, size, 1)
    return Launch("none")


def tf_config_position(text: str) -> tuple[int, int]:
    """(rank, number of workers) from a TF_CONFIG value; the chief, if listed, is rank 0."""
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs = len(cluster.get("chief", []))
        workers = len(cluster.get("worker", []))
        index = int(task.get("index", 0))
        rank = index if task["type"] == "chief" else chiefs + index
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(
            f"TF_CONFIG is not valid ({exc}); it must be JSON with 'cluster' and 'task',"
            " or unset it and let distxfer build it"
        ) from None
    return rank, chiefs + workers


def horovod_available() -> bool:
    return importlib.util.find_spec("horovod") is not None


def choose_engine(
    requested: str, launch: Launch, gpu_count: int, cpu_replicas: int
) -> tuple[str, str]:
    """The engine to run and why, for `engine.name` = requested (`auto` decides from the launch)."""
    if requested != "auto":
        return requested, "set by engine.name"
    if launch.launcher == "horovodrun":
        return "horovod", "started by horovodrun"
    if launch.launcher in ("mpirun", "srun") and launch.size > 1:
        if horovod_available():
            return "horovod", f"started by {launch.launcher} with {launch.size} processes"
        return (
            "multiworker",
            f"started by {launch.launcher} with {launch.size} processes; horovod is not installed",
        )
    if launch.launcher == "tf_config":
        return "multiworker", "TF_CONFIG is set"
    if gpu_count > 1:
        return "mirrored", f"{gpu_count} GPUs on this machine"
    if cpu_replicas > 1:
        return "mirrored", f"engine.cpu_replicas={cpu_replicas}"
    return "single", "one process" + (" on one GPU" if gpu_count == 1 else " on the CPU")
