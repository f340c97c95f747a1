"""`distxfer slurm`: write a ready batch script for a config, save it, and optionally submit it.

One run: the script goes to `<run_dir>/slurm/job.sbatch`, its log to `<run_dir>/slurm/JOBID.out`.
A sweep (`--sweep KEY=V1,V2`, repeatable): the config's run directory becomes the sweep folder,
with `sweep.json` (`distxfer.sweeps`), one run directory per combination, and one array job
(`slurm/sweep.sbatch`, logs `slurm/ARRAYJOB_TASK.out`) whose task i trains run i. Every run's
config and run directory are checked before anything is written or submitted.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from distxfer.config import Config, load_config
from distxfer.errors import ConfigError, DistxferError
from distxfer.run import check_run_dir
from distxfer.slurm.script import ENGINES, MAX_REQUEUES, WARN_SECONDS, JobResources, run_script
from distxfer.sweeps import Sweep, Trial, grid, parse_axis

SLURM_TIME = re.compile(r"\d+(-\d+)?(:\d+){0,2}")


class SlurmError(DistxferError):
    """sbatch refused a job, or is not installed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    p.add_argument("--engine", choices=sorted(ENGINES), default="horovod")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (0: CPU only)")
    p.add_argument("--tasks-per-node", type=int, help="default: one per GPU, else 1")
    p.add_argument("--cpus-per-task", type=int, help="cores per task (default: the cluster's)")
    p.add_argument("--time", default="24:00:00", help="time limit, [days-]hours:minutes:seconds")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--job-name", default="distxfer")
    p.add_argument(
        "--warn-seconds",
        type=int,
        default=WARN_SECONDS,
        help="USR1 this long before the time limit: checkpoint and requeue",
    )
    p.add_argument(
        "--max-requeues",
        type=int,
        default=MAX_REQUEUES,
        help="requeues of one job before it is left stopped",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="train every combination as one array job (repeatable)",
    )
    p.add_argument("--submit", action="store_true", help="submit with sbatch; print the job id")


def run(args: argparse.Namespace) -> int:
    config_path = Path(args.config).resolve()
    config = load_config(config_path, args.overrides)
    job_resources(args)  # bad flags are reported before the runs are checked
    distxfer = [sys.executable, "-m", "distxfer"]
    if args.sweep:
        sweep = plan_sweep(config_path, args.overrides, config, [parse_axis(a) for a in args.sweep])
        folder = sweep.folder
        resources = job_resources(args, array=f"0-{len(sweep.trials) - 1}", folder=folder)
        runs = [sweep.train_overrides(t) for t in sweep.trials]
        path = folder / "slurm" / "sweep.sbatch"
        usage = f"sbatch {path}    # {len(runs)} runs of {config_path.name}, listed in sweep.json"
    else:
        run_dir = Path(config.output.run_dir).resolve()
        check_run_dir(run_dir, config, allow_config_change=False)
        resources = job_resources(args, folder=run_dir)
        runs = [[*args.overrides, f"output.run_dir={run_dir}"]]
        path = run_dir / "slurm" / "job.sbatch"
        usage = f"sbatch {path}"
    text = run_script(
        args.engine,
        resources,
        distxfer=distxfer,
        config=config_path,
        runs=runs,
        usage=usage,
        max_requeues=args.max_requeues,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    if args.sweep:
        sweep.write()
    print(text)
    print(f"# saved to {path}")
    if not args.submit:
        print(f"# submit with: sbatch {shlex.quote(str(path))}")
        return 0
    job = sbatch(path)
    if args.sweep:
        sweep.jobs.append(job)
        sweep.write()
        print(f"submitted array job {job} ({len(runs)} runs); see `distxfer runs {folder}`")
    else:
        print(f"submitted job {job}; log {path.parent / (job + '.out')}")
    return 0


def job_resources(
    args: argparse.Namespace, *, array: str | None = None, folder: Path | None = None
) -> JobResources:
    """The job's `#SBATCH` values from the command line; the log goes into `folder`/slurm."""
    for name in ("nodes", "warn_seconds"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.gpus_per_node < 0 or args.max_requeues < 0:
        raise ConfigError("--gpus-per-node and --max-requeues must be 0 or more")
    tasks = args.tasks_per_node or args.gpus_per_node or 1
    if tasks < 1:
        raise ConfigError("--tasks-per-node must be at least 1")
    if not SLURM_TIME.fullmatch(args.time):
        raise ConfigError(
            f"--time {args.time!r} is not a Slurm time limit; use e.g. 30, 4:00:00 or 2-00:00:00"
        )
    log = "%A_%a.out" if array else "%j.out"
    return JobResources(
        nodes=args.nodes,
        tasks_per_node=tasks,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        partition=args.partition,
        account=args.account,
        job_name=args.job_name,
        output=str(folder / "slurm" / log) if folder else log,
        array=array,
        warn_seconds=args.warn_seconds,
    )


def plan_sweep(
    config_path: Path, overrides: list[str], config: Config, axes: list[tuple[str, list[str]]]
) -> Sweep:
    """The sweep under the config's run directory; every run's config and folder checked."""
    sweep = Sweep(Path(config.output.run_dir).resolve(), str(config_path), overrides, grid(axes))
    for trial in sweep.trials:
        check_trial(sweep, trial)
    earlier = Sweep.read(sweep.folder)
    if earlier is not None:
        if not earlier.same_runs(sweep):
            raise ConfigError(
                f"{sweep.folder} holds another sweep (see its sweep.json); use a new"
                " output.run_dir, or the same config, overrides and --sweep values to resume it"
            )
        sweep.jobs = earlier.jobs
    elif sweep.folder.is_dir() and any(sweep.folder.iterdir()):
        raise ConfigError(
            f"output.run_dir {sweep.folder} exists and is not a sweep folder; choose another"
        )
    return sweep


def check_trial(sweep: Sweep, trial: Trial) -> None:
    try:
        config = load_config(Path(sweep.config), sweep.train_overrides(trial))
    except ConfigError as exc:
        raise ConfigError(f"sweep run {trial.name}: {exc}") from None
    check_run_dir(sweep.run_dir(trial), config, allow_config_change=False)


def sbatch(script: Path) -> str:
    """Submit `script`; its job id."""
    try:
        out = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120
        )
    except FileNotFoundError:
        raise SlurmError(
            f"sbatch is not installed here; submit {script} from a machine of the cluster"
        ) from None
    if out.returncode != 0:
        message = " ".join(out.stderr.split()) or f"exit status {out.returncode}"
        raise SlurmError(f"sbatch refused {script}: {message}")
    return out.stdout.strip().split(";")[0]
