"""`distxfer cv`: k-fold cross-validation of one config, one ordinary run per fold.

    distxfer cv -c configs/flowers.yaml --folds 5            # the folds one after another
    distxfer cv -c configs/flowers.yaml --folds 5 --slurm --gpus-per-node 4 --time 4:00:00
    distxfer cv --summary runs/flowers                       # the table, at any time

The config's `output.run_dir` becomes the cross-validation folder: a sweep (`distxfer.sweeps`)
whose run `fold-I` trains with `data.folds=K data.fold=I`, that is on every fold of
`data.train_dir` but fold I and validates on fold I (`data.listing.stratified_folds`). Each fold
is a normal run directory (checkpoints, TensorBoard, reports), so a fold resumes like any run
and `distxfer cv` run again goes on at the fold and step it stopped at. Under `--slurm` the folds
are one array job, each task requeueable, and a job that depends on it writes the summary
(`distxfer.cvsummary`) when every fold has finished.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from distxfer.config import Config, load_config
from distxfer.cvsummary import render_summary, write_summary
from distxfer.data.listing import list_class_folder
from distxfer.data.recordmeta import is_record_folder
from distxfer.engines import current_launch
from distxfer.errors import ConfigError, DataError
from distxfer.run import train
from distxfer.runs import latest_state
from distxfer.slurm import command as slurm_command
from distxfer.sweeps import Sweep, Trial, plan_sweep
from distxfer.train.state import Outcome
from distxfer.train.stopping import EXIT_PREEMPTED, hold_stop_signals

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    p.add_argument("--folds", type=int, metavar="K", help="number of folds (at least 2)")
    p.add_argument(
        "--summary", metavar="CV_DIR", help="only write and print the table of CV_DIR's folds"
    )
    p.add_argument(
        "--slurm", action="store_true", help="submit the folds as one Slurm array job instead"
    )
    group = p.add_argument_group("Slurm job (with --slurm; as for `distxfer slurm`)")
    slurm_command.add_job_arguments(group)


def run(args: argparse.Namespace) -> int:
    if args.summary:
        if args.config or args.folds or args.overrides or args.slurm:
            raise ConfigError("--summary CV_DIR takes no config, overrides, --folds or --slurm")
        folder = Path(args.summary)
        if Sweep.read(folder) is None:
            raise ConfigError(f"{folder} is not a cross-validation folder (no sweep.json in it)")
        print(render_summary(write_summary(folder)))
        return 0
    if not args.config or args.folds is None:
        raise ConfigError("distxfer cv needs -c CONFIG and --folds K (or --summary CV_DIR)")
    hold_stop_signals()  # a preemption signal during start-up stops the first fold cleanly
    config_path = Path(args.config).resolve()
    if args.slurm:
        slurm_command.job_resources(args)  # bad flags first, before the folds are checked
    sweep = plan_folds(config_path, args.overrides, args.folds)
    if args.slurm:
        return submit_folds(args, sweep)
    return run_folds(sweep)


def plan_folds(config_path: Path, overrides: list[str], folds: int) -> Sweep:
    """The cross-validation folder's sweep of `folds` runs; every fold's config and folder
    checked, and the data found fit for that many folds, before anything is written."""
    config = load_config(config_path, overrides)
    check_folds(config, folds)
    trials = [Trial(f"fold-{i}", (f"data.folds={folds}", f"data.fold={i}")) for i in range(folds)]
    return plan_sweep(config_path, overrides, config, trials)


def check_folds(config: Config, folds: int) -> None:
    """Raise unless `config`'s training folder can be split into `folds` stratified folds."""
    data = config.data
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds})")
    for key, value in (("data.val_dir", data.val_dir), ("data.val_split", data.val_split)):
        if value:
            raise ConfigError(
                f"{key} is set, but the folds replace it (each fold validates on its own part"
                f" of data.train_dir); remove {key} from the config or pass {key}="
                + ("null" if key.endswith("dir") else "0")
            )
    if data.folds:
        raise ConfigError("data.folds is set by distxfer cv itself; remove it from the config")
    if not data.train_dir:
        raise DataError("data.train_dir is not set; point it at the class folders to split")
    if is_record_folder(data.train_dir):
        raise DataError(
            f"data.train_dir {data.train_dir} holds TFRecords; cross-validation splits class"
            " folders: point data.train_dir at the class folders the records were converted from"
        )
    class_names, listed = list_class_folder(data.train_dir, follow_links=data.follow_links)
    counts = listed.class_counts(len(class_names))
    smallest = int(counts.argmin())
    if counts[smallest] < folds:
        raise DataError(
            f"--folds {folds} is more than the {counts[smallest]} image(s) of class"
            f" {class_names[smallest]!r}, so some fold would not validate it; use at most"
            f" {counts[smallest]} folds or add images to the class"
        )


def run_folds(sweep: Sweep) -> int:
    """Train the folds that have not finished, one after another, then write the summary.

    Every rank of a multi-process launch runs this same loop, one distributed run per fold.
    """
    chief = current_launch().rank == 0
    if chief:
        sweep.write()
    for index, trial in enumerate(sweep.trials):
        run_dir = sweep.run_dir(trial)
        state = latest_state(run_dir)
        if state is not None and state.finished:
            log.info("fold %d of %d: finished already (%s)", index, len(sweep.trials), run_dir)
            continue
        log.info("fold %d of %d: training in %s", index, len(sweep.trials), run_dir)
        config = load_config(Path(sweep.config), sweep.train_overrides(trial))
        outcome = train(config)
        if outcome is Outcome.SIGNAL:
            log.info("stopped in fold %d; run the same command to go on from there", index)
            return EXIT_PREEMPTED
        if outcome is Outcome.TIME:
            log.info("fold %d used max_train_seconds; run the same command to go on", index)
            return 0
    if chief:
        rows = write_summary(sweep.folder)
        print(render_summary(rows))
    return 0


def submit_folds(args: argparse.Namespace, sweep: Sweep) -> int:
    """The folds as one array job, then a job that writes the summary once all have finished."""
    args = argparse.Namespace(**vars(args), sweep=[], submit=True)
    slurm_command.submit_sweep(args, sweep, what="folds")
    array_job = sweep.jobs[-1]
    resources = slurm_command.job_resources(args, folder=sweep.folder)
    summary = [
        "sbatch",
        "--parsable",
        f"--dependency=afterok:{array_job}",
        "--kill-on-invalid-dep=yes",
        "--ntasks=1",
        "--time=10",
        f"--job-name={args.job_name}-summary",
        f"--output={sweep.folder / 'slurm' / 'summary-%j.out'}",
        *(f"--{name}={value}" for name, value in _placement(resources) if value),
        "--wrap",
        shlex.join([*slurm_command.python_command(), "cv", "--summary", str(sweep.folder)]),
    ]
    job = slurm_command.sbatch_command(summary, what="the summary job")
    print(
        f"submitted summary job {job}: it writes {sweep.folder / 'cv_summary.md'} once every"
        f" fold has finished (or run `distxfer cv --summary {sweep.folder}`)"
    )
    return 0


def _placement(resources: slurm_command.JobResources) -> list[tuple[str, str | None]]:
    return [("partition", resources.partition), ("account", resources.account)]
