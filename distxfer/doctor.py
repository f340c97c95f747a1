"""`distxfer doctor`: versions, devices, the Horovod build, which engines run here, why not.

Every check is ok, a warning or a failure from a real probe: each engine is started in fresh
processes and does a tiny collective (`distxfer.engines.probe`), Slurm is asked whether its
controller answers. What the user names (`distxfer doctor horovod slurm`) must work: if any of
it cannot, its check is a failure and doctor exits 1; what they did not name only warns.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import distxfer
from distxfer.engines import current_launch

# What `distxfer doctor NAME ...` may ask about: each engine, and Slurm.
TOPICS = ("single", "mirrored", "multiworker", "horovod", "slurm")
Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    topic: str = ""  # the TOPICS entry it answers, if any
    warn_only: bool = False  # ok=False here is a warning unless the user asked about the topic

    def status(self, asked: Sequence[str] = ()) -> Status:
        if self.ok:
            return "ok"
        return "warn" if self.warn_only and self.topic not in asked else "fail"


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


def engine_checks(horovod: Check, mpi: Check, engines: Sequence[str]) -> list[Check]:
    """`engines` probed in fresh processes (in parallel); horovod under each launcher it has."""
    from distxfer.engines.probe import run_probe

    probes: dict[str, tuple[str, str | None]] = {
        f"engine {name}": (name, None) for name in engines if name != "horovod"
    }
    if "horovod" in engines and horovod.ok:
        probes["engine horovod (horovodrun, gloo)"] = ("horovod", None)
        if mpi.ok and shutil.which("mpirun"):
            probes["engine horovod (mpirun)"] = ("horovod", "mpirun")
    with ThreadPoolExecutor(max(len(probes), 1)) as pool:
        results = {name: pool.submit(run_probe, *args) for name, args in probes.items()}
        checks = [
            Check(name, r.ok, r.detail, probes[name][0], warn_only=True)
            for name, r in ((n, f.result()) for n, f in results.items())
        ]
    if "horovod" in engines and not horovod.ok:
        checks.append(Check("engine horovod", False, horovod.detail, "horovod", warn_only=True))
    launch = current_launch()
    where = f"launcher={launch.launcher}, rank {launch.rank} of {launch.size}"
    return [*checks, Check("this process", True, where)]


def collect(asked: Sequence[str] = ()) -> list[Check]:
    """Every check; the engines probed are those `asked` names, or all of them."""
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
    horovod = replace(horovod, topic="horovod", warn_only=True)
    mpi = replace(mpi, warn_only=True)
    engines = [t for t in TOPICS if t != "slurm" and (t in asked or not asked)]
    return [*checks, horovod, mpi, slurm_check(), *engine_checks(horovod, mpi, engines)]


def slurm_check() -> Check:
    """Slurm is usable when srun runs and its controller answers `scontrol ping`."""
    if not shutil.which("srun"):
        return Check(
            "slurm", False, "srun not on PATH (needed only on a Slurm cluster)", "slurm", True
        )
    status, version = _run(["srun", "--version"])
    if status == 0:
        status, answer = _run(["scontrol", "ping"])
        if status == 0 and " is UP" in answer:
            return Check("slurm", True, f"{version}; {answer}", "slurm")
    else:
        answer = version
    return Check(
        "slurm",
        False,
        f"srun is installed but no Slurm controller answers ({answer}); run this on the"
        " cluster's login node, or set SLURM_CONF to its slurm.conf",
        "slurm",
        warn_only=True,
    )


def _run(argv: list[str]) -> tuple[int, str]:
    """(exit status, the last line it wrote: stdout, else stderr)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, f"{argv[0]} did not answer: {exc}"
    lines = (out.stdout.strip() or out.stderr.strip() or "no output").splitlines()
    return out.returncode, lines[-1].strip()[:300]


def render(checks: list[Check], asked: Sequence[str] = ()) -> str:
    width = max(len(c.name) for c in checks)
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    return "\n".join(f"{marks[c.status(asked)]} {c.name:<{width}}  {c.detail}" for c in checks)


def exit_status(checks: list[Check], asked: Sequence[str] = ()) -> int:
    """1 if a check failed (what the user asked about, or what everything needs), else 0."""
    return int(any(c.status(asked) == "fail" for c in checks))
