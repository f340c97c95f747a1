"""Distributed engines behind one interface (`Engine`), and `create_engine`, which picks one.

Where this process runs is detected once (`current_launch`, from the launcher's environment) and
handed to the engine; from then on everything asks the engine. This package's root imports no
TensorFlow, so the CLI can use it before the engine starts; `create_engine` must run before any
other TensorFlow work in the process: it configures devices and threads, and
MultiWorkerMirroredStrategy must exist before the runtime starts.
"""

from __future__ import annotations

import os
from dataclasses import replace

from distxfer.config import EngineConfig
from distxfer.engines.base import Engine
from distxfer.engines.detect import Launch, choose_engine, current_launch, tf_config_position
from distxfer.errors import EngineError

__all__ = ["Engine", "Launch", "create_engine", "current_launch"]


def create_engine(cfg: EngineConfig) -> Engine:
    """Start the engine `cfg.name` asks for (or the one the environment implies, for `auto`)."""
    import tensorflow as tf  # the first TensorFlow import of a training process

    from distxfer.engines.devices import configure_devices

    launch = current_launch()
    gpu_count = len(tf.config.list_physical_devices("GPU"))
    name, reason = choose_engine(cfg.name, launch, gpu_count, cfg.cpu_replicas)
    if name in ("horovod", "multiworker"):
        engine = (
            _horovod(cfg, launch, reason)
            if name == "horovod"
            else _multiworker(cfg, launch, reason)
        )
        engine.watch(cfg.collective_timeout_seconds)
        return engine
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
        return MirroredEngine(launch, gpus=gpus, reason=reason)
    from distxfer.engines.single import SingleEngine

    return SingleEngine(launch, reason=reason)


def _multiworker(cfg: EngineConfig, launch: Launch, reason: str) -> Engine:
    from distxfer.engines.devices import configure_devices
    from distxfer.engines.multiworker import MultiWorkerEngine
    from distxfer.engines.tfconfig import ensure_tf_config

    how = ensure_tf_config(launch)
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:  # TF_CONFIG decides a worker's place, even where a launcher set its own
        rank, size = tf_config_position(tf_config)
        launch = replace(launch, rank=rank, size=size)
    gpu_index = launch.local_rank if launch.local_size > 1 else None
    configure_devices(threads=cfg.threads, gpu_index=gpu_index)
    timeout = cfg.collective_timeout_seconds
    return MultiWorkerEngine(
        launch, collective=cfg.collective, reason=f"{reason}; {how}", timeout=timeout
    )


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

    if launch.launcher in ("mpirun", "srun") and launch.size > 1:
        _require_horovod_mpi(launch.launcher)
    if launch.launcher == "srun" and launch.size > 1 and "PMIX_RANK" not in os.environ:
        raise EngineError(
            "engine horovod under srun needs PMIx to start MPI: use `srun --mpi=pmix ...`"
            " (or engine.name=multiworker, which plain srun can start)"
        )
    configure_devices(threads=cfg.threads, gpu_index=launch.local_rank)
    return HorovodEngine(
        launch,
        fp16_allreduce=cfg.fp16_allreduce,
        reason=reason,
        timeout=cfg.collective_timeout_seconds,
    )


def _require_horovod_mpi(launcher: str) -> None:
    """Processes started by mpirun or srun reach each other through MPI: Horovod needs it built."""
    import horovod.tensorflow as hvd

    if not hvd.mpi_built():
        raise EngineError(
            f"engine horovod: {launcher} started this process, but this Horovod was built"
            " without MPI; install an MPI (e.g. apt-get install libopenmpi-dev) and run"
            " launch/setup.sh to rebuild it, or start with `launch/horovodrun.sh --gloo`"
        )
