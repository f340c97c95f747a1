"""`distxfer doctor`: versions, devices, the Horovod build, which engines can run here, why not."""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import distxfer
from distxfer.engines import current_launch


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as exc:  # noqa: BLE001 - a broken install is exactly what doctor reports
        return f"not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"


def horovod_build() -> Check:
    """What `horovodrun --check-build` reports: frameworks and controllers/operations built."""
    try:
        import horovod
        import horovod.tensorflow as hvd
    except Exception as exc:  # noqa: BLE001
        return Check(
            "horovod",
            False,
            f"not usable ({type(exc).__name__}: {str(exc).splitlines()[0][:100]});"
            " run launch/setup.sh (it builds Horovod for this TensorFlow)",
        )
    built = {
        "gloo": hvd.gloo_built(),
        "mpi": hvd.mpi_built(),
        "nccl": bool(hvd.nccl_built()),
        "cuda": hvd.cuda_built(),
        "rocm": hvd.rocm_built(),
    }
    features = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in built.items())
    runner = shutil.which("horovodrun") or "not on PATH"
    return Check(
        "horovod", True, f"{horovod.__version__} with TensorFlow; {features}; horovodrun: {runner}"
    )


def mpi_check() -> Check:
    mpirun = shutil.which("mpirun")
    try:
        from mpi4py import MPI

        library = MPI.Get_library_version().splitlines()[0].split(",")[0]
        return Check(
            "mpi",
            True,
            f"mpi4py {importlib.import_module('mpi4py').__version__} on {library};"
            f" mpirun: {mpirun or 'not on PATH'}",
        )
    except Exception as exc:  # noqa: BLE001
        return Check(
            "mpi",
            False,
            f"mpi4py not usable ({type(exc).__name__}); mpirun: {mpirun or 'not on PATH'}",
        )


def engine_checks(gpus: int, horovod: Check, mpi: Check) -> list[Check]:
    launch = current_launch()
    srun = shutil.which("srun")
    one_device = "over one device only; on a CPU machine set engine.cpu_replicas=2 to mirror"
    mirrored = f"over {gpus} GPUs" if gpus > 1 else f"{one_device} logical devices"
    multi_ways = (
        ["TF_CONFIG"] + (["mpirun + mpi4py"] if mpi.ok else []) + (["srun"] if srun else [])
    )
    return [
        Check("engine single", True, "one process, one device"),
        Check("engine mirrored", True, mirrored),
        Check(
            "engine multiworker",
            True,
            f"started with {', '.join(multi_ways)}; or launch/multiworker_local.sh",
        ),
        Check(
            "engine horovod",
            horovod.ok,
            "horovodrun, mpirun or srun" if horovod.ok else horovod.detail,
        ),
        Check(
            "this process", True, f"launcher={launch.launcher}, rank {launch.rank} of {launch.size}"
        ),
    ]


def collect() -> list[Check]:
    import tensorflow as tf

    from distxfer.models.weights import keras_cache_dir

    gpus = tf.config.list_physical_devices("GPU")
    cpus = tf.config.list_physical_devices("CPU")
    keras_home = keras_cache_dir() / "models"
    cached = sorted(p.name for p in keras_home.glob("*.h5")) if keras_home.is_dir() else []
    checks = [
        Check("distxfer", True, f"{distxfer.__version__} ({Path(distxfer.__file__).parent})"),
        Check("python", True, f"{platform.python_version()} ({sys.executable})"),
        Check(
            "tensorflow",
            True,
            f"{tf.__version__} (CUDA build: {'yes' if tf.test.is_built_with_cuda() else 'no'})",
        ),
        Check("keras", True, _version("keras")),
        Check(
            "numpy / tensorboard / yaml",
            True,
            f"{_version('numpy')} / {_version('tensorboard')} / {_version('yaml')}",
        ),
        Check(
            "devices",
            True,
            f"{len(cpus)} CPU, {len(gpus)} GPU" + (f": {[g.name for g in gpus]}" if gpus else ""),
        ),
        Check("cpu cores", True, str(os.cpu_count())),
        Check("imagenet weights cache", True, f"{keras_home}: {len(cached)} file(s)"),
    ]
    horovod, mpi = horovod_build(), mpi_check()
    slurm = shutil.which("srun")
    checks += [
        horovod,
        mpi,
        Check("slurm", bool(slurm), _slurm_version() if slurm else "srun not on PATH"),
    ]
    return checks + engine_checks(len(gpus), horovod, mpi)


def _slurm_version() -> str:
    try:
        out = subprocess.run(["srun", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"srun present but not answering ({exc})"


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{'ok ' if c.ok else 'NO '} {c.name:<{width}}  {c.detail}" for c in checks)
