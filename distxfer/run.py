"""One training run from config to report: the `distxfer train` command.

Order matters: everything that can be wrong with the input (config, run directory, the backbone
file and the weights to start from, data folders, bad images) is found before the engine starts
and before any model is built, and this module imports no TensorFlow, so those errors come in
well under a second. Then the chief alone writes
into the run directory: the resolved config, the class list and the log here, then
(`distxfer.train.session`) checkpoints, TensorBoard, evaluation reports and the trained model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import yaml

from distxfer.atomic import write_bytes
from distxfer.config import Config, config_differences, config_to_dict, dump_config
from distxfer.data import DataSplits
from distxfer.data.sharedlisting import agree_on_splits, load_splits_once
from distxfer.data.weighting import describe_class_weights
from distxfer.engines import Engine, create_engine, current_launch
from distxfer.errors import ConfigError
from distxfer.logs import log_to_file
from distxfer.models.pretrained import check_model_sources
from distxfer.runlock import LOCK_NAME, RunLock
from distxfer.status import write_status
from distxfer.train.state import Outcome

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without changing what is trained
# (output.run_dir: the run directory may be moved or reached by another path).
RESUMABLE_CHANGES = (
    "output.run_dir",
    "engine.",
    "max_train_seconds",
    "nonfinite_",
    "steps_per_execution",
    "xla",
    "output.log_every_steps",
    "output.stop_check_steps",
    "output.image_grid",
    "output.tensorboard",
    "output.keep_checkpoints",
    "output.checkpoint_every_steps",
    "data.cache",
    "data.scan",
)
DATA_FOLDERS = ("train_dir", "val_dir", "test_dir")  # the data keys that name folders
# What may be in a run directory before the run starts: a launcher's files (`distxfer slurm`),
# the lock of a run that ended before writing its config (`distxfer.runlock`).
LAUNCH_ENTRIES = ("slurm", LOCK_NAME)


def check_run_dir(run_dir: Path, config: Config, *, allow_config_change: bool) -> bool:
    """True if `run_dir` holds a run to resume; refuse to mix a different config into it."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        old = yaml.safe_load(saved.read_text()) or {}
        changed = [
            k
            for k in config_differences(old, config_to_dict(config))
            if not k.startswith(RESUMABLE_CHANGES)
        ]
        if changed and not allow_config_change:
            raise ConfigError(
                f"output.run_dir {run_dir} holds a run with a different config"
                f" ({', '.join(changed[:6])}); use a new output.run_dir, or pass"
                " --allow-config-change to resume it anyway"
            )
        return True
    if run_dir.exists() and any(p.name not in LAUNCH_ENTRIES for p in run_dir.iterdir()):
        raise ConfigError(
            f"output.run_dir {run_dir} exists and is not a distxfer run; choose another directory"
        )
    return False


def check_start(config: Config, *, allow_config_change: bool = False) -> bool:
    """What `train` checks before it reads any data: the run directory (True if it holds a run
    to resume), the backbone file and the weights to start from, and that the data folders exist.
    `distxfer train --check` stops here (a Slurm job runs it once, before starting its tasks)."""
    resuming = check_run_dir(
        Path(config.output.run_dir), config, allow_config_change=allow_config_change
    )
    check_model_sources(config.model)
    for key in DATA_FOLDERS:
        folder = getattr(config.data, key)
        if folder and not Path(folder).expanduser().is_dir():
            what = "is not a folder" if Path(folder).expanduser().exists() else "does not exist"
            raise ConfigError(
                f"data.{key}: {folder} {what}; point it at a folder of class folders or of"
                " TFRecord files"
            )
    return resuming


def train(config: Config, *, allow_config_change: bool = False) -> Outcome:
    """Run (or resume) training on this process's engine; how it ended."""
    run_dir = Path(config.output.run_dir)
    resuming = check_start(config, allow_config_change=allow_config_change)
    launch = current_launch()  # rank 0 lists the data; the other ranks read what it found
    splits = load_splits_once(config.data, config.seed, rank=launch.rank, size=launch.size)
    engine = create_engine(config.engine)
    try:
        splits = agree_on_splits(engine, splits, config.data, config.seed)
        with (
            hold_run_dir(run_dir, engine),
            log_to_file(run_dir / "train.log" if engine.is_chief else None),
        ):
            log.info("engine %s (%s)", engine.describe(), engine.reason)
            log.info("data: %d classes; %s", len(splits.class_names), describe_splits(splits))
            if engine.is_chief:
                _write_run_files(run_dir, config, splits, resuming)
            return _fit(config, engine, splits, run_dir)
    finally:
        engine.shutdown()


@contextlib.contextmanager
def hold_run_dir(run_dir: Path, engine: Engine) -> Iterator[None]:
    """The chief holds the run directory's lock inside the block; if another run holds it,
    every rank stops with the same one-line error (the lock is agreed through the engine)."""
    lock, problem = RunLock(run_dir), None
    if engine.is_chief:
        try:
            lock.acquire()
        except ConfigError as exc:
            problem = str(exc)
    problem = engine.broadcast_object(problem)
    if problem:
        lock.release()
        raise ConfigError(problem)
    try:
        yield
    finally:
        lock.release()


def _fit(config: Config, engine: Engine, splits: DataSplits, run_dir: Path) -> Outcome:
    """Train on every rank; the chief keeps `<run_dir>/status.json` up to date around it. No
    rank returns before the chief's last write: a launcher that ends every task at the first
    non-zero exit (`srun --kill-on-bad-exit`, exit 75 when preempted) must not cut it short."""
    from distxfer.train.session import fit_run  # TensorFlow: only once the engine runs

    chief = engine.is_chief
    if chief:
        write_status(run_dir, "running")
    try:
        outcome = fit_run(config, engine, splits, run_dir)
    except BaseException as exc:
        if chief:
            _record_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    if chief:
        state = "preempted" if outcome is Outcome.SIGNAL else "finished"
        _record_status(run_dir, state, outcome=outcome.value)
    engine.barrier()
    return outcome


def _record_status(run_dir: Path, state: str, **details: object) -> None:
    """Write how the run ended, if the disk lets us: the end itself (a full disk, say) must
    not be replaced by an error about recording it."""
    try:
        write_status(run_dir, state, **details)
    except OSError as exc:
        log.warning("could not record the run's state %r in %s: %s", state, run_dir, exc)


def describe_splits(splits: DataSplits) -> str:
    sizes = [
        f"{name} {len(split)}"
        for name, split in (
            ("train", splits.train),
            ("validation", splits.val),
            ("test", splits.test),
        )
        if split is not None
    ]
    weights = splits.class_weights
    return (
        ", ".join(sizes)
        + " images"
        + (f"; {len(splits.skipped)} bad files skipped" if splits.skipped else "")
        + (
            f"; class weights {describe_class_weights(weights, splits.class_names)}"
            if weights
            else ""
        )
    )


def _write_run_files(run_dir: Path, config: Config, splits: DataSplits, resuming: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(run_dir / "config.yaml", dump_config(config).encode())
    write_bytes(run_dir / "classes.json", json.dumps(splits.class_names, indent=1).encode())
    if splits.skipped:
        lines = [f"{bad.path}\t{bad.reason}" for bad in splits.skipped]
        write_bytes(run_dir / "skipped_files.tsv", ("\n".join(lines) + "\n").encode())
        log.warning(
            "skipped %d bad image files (data.bad_files=skip); list in %s",
            len(splits.skipped),
            run_dir / "skipped_files.tsv",
        )
    log.info("%s run directory %s", "resuming in" if resuming else "writing to", run_dir)
