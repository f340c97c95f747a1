"""Distributed engines behind one interface (`Engine`), and `create_engine`, which picks one.

`create_engine` must run before any other TensorFlow work in the process: it configures
devices and threads, and MultiWorkerMirroredStrategy must exist before the runtime starts.
"""

from __future__ import annotations

import os

from distxfer.config import EngineConfig
from distxfer.engines.base import Engine
from distxfer.engines.detect import Launch, choose_engine, detect_launch
from distxfer.errors import EngineError

__all__ = ["Engine", "Launch", "create_engine", "detect_launch"]


def create_engine(cfg: EngineConfig, launch: Launch | None = None) -> Engine:
    """Start the engine `cfg.name` asks for (or the one the environment implies, for `auto`)."""
    launch = launch or detect_launch()
    import tensorflow as tf

    from distxfer.engines.devices import configure_devices

    gpu_count = len(tf.config.list_physical_devices("GPU"))
    name, reason = choose_engine(cfg.name, launch, gpu_count, cfg.cpu_replicas)
    if name == "horovod":
        return _horovod(cfg, launch, reason)
    if name == "multiworker":
        from distxfer.engines.multiworker import MultiWorkerEngine
        from distxfer.engines.tfconfig import ensure_tf_config

        how = ensure_tf_config(launch)
        configure_devices(
            threads=cfg.threads, gpu_index=launch.local_rank if launch.local_size > 1 else None
        )
        return MultiWorkerEngine(collective=cfg.collective, reason=f"{reason}; {how}")
    if launch.size > 1:
        raise EngineError(
            f"engine {name} runs in one process, but {launch.launcher} started {launch.size};"
            " use engine.name=horovod or multiworker, or start one process"
        )
    gpus = configure_devices(
        threads=cfg.threads, cpu_replicas=cfg.cpu_replicas if name == "mirrored" else 0
    )
    if name == "mirrored":
        from distxfer.engines.mirrored import MirroredEngine

        if not gpus and cfg.cpu_replicas < 2 and gpu_count < 2:
            reason += "; only one device, set engine.cpu_replicas=2 to mirror over CPU devices"
        return MirroredEngine(gpus=gpus, reason=reason)
    from distxfer.engines.single import SingleEngine

    return SingleEngine(reason=reason)


def _horovod(cfg: EngineConfig, launch: Launch, reason: str) -> Engine:
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            f"engine horovod is not usable here ({exc}); run launch/setup.sh to build it,"
            " or `distxfer doctor` to see why"
        ) from None
    from distxfer.engines.devices import configure_devices
    from distxfer.engines.horovod import HorovodEngine

    if launch.launcher == "srun" and launch.size > 1 and "PMIX_RANK" not in os.environ:
        raise EngineError(
            "engine horovod under srun needs PMIx to start MPI: use `srun --mpi=pmix ...`"
            " (or engine.name=multiworker, which plain srun can start)"
        )
    configure_devices(threads=cfg.threads, gpu_index=launch.local_rank)
    return HorovodEngine(
        fp16_allreduce=cfg.fp16_allreduce, reason=reason, expected_size=launch.size
    )
