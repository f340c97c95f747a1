"""Slurm batch scripts for distxfer's two multi-node engines, written from one definition.

A script has three parts: the `#SBATCH` lines (resources, the log named by job id and kept
across requeues, the warning signal, `--requeue`), what to run (a config and its overrides: from
the command line in the generic scripts of `slurm/`, written in by `distxfer slurm`, or one set
per array task for a sweep), and the same shell logic in every script (`JOB_LOGIC`): check the
input once (`distxfer train --check`: a bad config fails the job with its own status), start the
step with srun in the background and wait for it, so that the batch shell's trap passes USR1 and
TERM to the tasks while they train (`--kill-on-bad-exit`: a task that fails or is killed ends the
step, so no task waits forever in a collective for it); then requeue the job only when it stopped
for a USR1 warning (the tasks checkpointed and exited EXIT_PREEMPTED), never after `scancel`
(TERM) or a failure, and at most DISTXFER_MAX_REQUEUES times. `python -m distxfer.slurm.script`
rewrites `slurm/`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distxfer.train.stopping import EXIT_PREEMPTED

MAX_REQUEUES = 20  # requeues of one job (SLURM_RESTART_COUNT) before it is left stopped
WARN_SECONDS = 120  # the warning comes this long before the time limit


@dataclass(frozen=True)
class EngineStep:
    """How one engine's tasks are started inside the job."""

    srun_args: tuple[str, ...]
    summary: str


ENGINES = {
    "horovod": EngineStep(
        ("--mpi=pmix",),
        "Horovod, one task per GPU, MPI started by srun --mpi=pmix",
    ),
    "multiworker": EngineStep(
        (),
        "MultiWorkerMirroredStrategy, one task per GPU, TF_CONFIG from srun's variables",
    ),
}


@dataclass(frozen=True)
class JobResources:
    """The `#SBATCH` values of a job; None (no GPUs: 0) leaves a line commented out for the user
    to fill in."""

    nodes: int = 1
    tasks_per_node: int = 4
    gpus_per_node: int = 4
    cpus_per_task: int | None = 8
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    job_name: str = "distxfer"
    output: str = "slurm-%x-%j.out"
    array: str | None = None  # e.g. "0-3": one array task per run of a sweep
    warn_seconds: int = WARN_SECONDS

    def sbatch_lines(self) -> list[str]:
        """The `#SBATCH` lines, each with a comment saying what it is for; `##SBATCH` lines are
        left for the user to fill in."""
        options = [
            (f"--job-name={self.job_name}", "shown by squeue", True),
            (f"--nodes={self.nodes}", "machines", True),
            (f"--ntasks-per-node={self.tasks_per_node}", "one task per GPU", True),
            (
                f"--gpus-per-node={self.gpus_per_node}",
                "GPUs per machine, one bound to each task",
                self.gpus_per_node > 0,
            ),
            (
                f"--cpus-per-task={self.cpus_per_task or 8}",
                "cores per task, for decoding images",
                self.cpus_per_task is not None,
            ),
            (f"--time={self.time}", "time limit, [days-]hours:minutes:seconds", True),
            (f"--partition={self.partition or 'gpu'}", "your cluster's", bool(self.partition)),
            (f"--account={self.account or 'project'}", "your project's", bool(self.account)),
            *([(f"--array={self.array}", "one array task per run", True)] if self.array else []),
            (f"--output={self.output}", "by job id (%A_%a: array job and task)", True),
            ("--open-mode=append", "a requeued job keeps its earlier log", True),
            (
                f"--signal=B:USR1@{self.warn_seconds}",
                "warn the batch shell before the time limit",
                True,
            ),
            ("--requeue", "this script requeues the job after the warning", True),
        ]
        lines = [f"{'#SBATCH' if active else '##SBATCH'} {option}" for option, _, active in options]
        width = max(len(line) for line in lines) + 1
        return [f"{line:<{width}}# {note}" for line, (_, note, _) in zip(lines, options)]


# What runs in the generic scripts of slurm/: the config, a run directory and overrides.
ARGUMENTS = """\
if [ $# -lt 1 ] || [[ $1 == -* ]]; then
    echo "usage: sbatch [sbatch options] slurm/$ENGINE.sbatch CONFIG [RUN_DIR] [KEY=VALUE ...]" >&2
    exit 2
fi
CONFIG=$1
shift
RUN_ARGS=()
if [ $# -gt 0 ] && [[ $1 != *=* ]]; then  # a run directory (overrides always hold "=")
    RUN_ARGS=("output.run_dir=$1")
    shift
fi
RUN_ARGS+=("$@")
if [ -n "${DISTXFER:-}" ]; then  # e.g. DISTXFER="/opt/venv/bin/python -m distxfer"
    read -ra DISTXFER_CMD <<< "$DISTXFER"
elif command -v distxfer > /dev/null; then
    DISTXFER_CMD=(distxfer)
elif [ -x "${SLURM_SUBMIT_DIR:-.}/.venv/bin/distxfer" ]; then
    DISTXFER_CMD=("${SLURM_SUBMIT_DIR:-.}/.venv/bin/distxfer")
else
    echo "distxfer is not on PATH: activate its environment before sbatch, or set DISTXFER" >&2
    exit 2
fi
"""

# The same in every script: start the step, pass signals on, requeue only after a warning.
JOB_LOGIC = """\
MAX_REQUEUES=${{DISTXFER_MAX_REQUEUES:-{max_requeues}}}
RESTARTS=${{SLURM_RESTART_COUNT:-0}}
EXIT_PREEMPTED={exit_preempted}
say() {{ echo "[distxfer-slurm $(date +%H:%M:%S)] $*"; }}

# A task that fails or is killed ends the whole step at once: none is left waiting for it.
STEP=(--kill-on-bad-exit=1 "${{ENGINE_SRUN_ARGS[@]}}")
if [ "${{SLURM_GPUS_ON_NODE:-0}}" != 0 ]; then
    STEP+=(--gpu-bind=single:1)  # each task sees its own GPU
fi
TRAIN=("${{DISTXFER_CMD[@]}}" train -c "$CONFIG" "engine.name=$ENGINE" "${{RUN_ARGS[@]}}")
CHECK=("${{DISTXFER_CMD[@]}}" train --check -c "$CONFIG" "engine.name=$ENGINE" "${{RUN_ARGS[@]}}")

# USR1 is Slurm's warning (time limit, or `scancel --signal=USR1 --batch`): requeue afterwards.
# TERM is scancel (or the time limit itself): checkpoint the same way, but do not requeue.
step="" warned="" cancelled="" unsent=""
pass_on() {{
    if [ "$1" = USR1 ]; then warned=1; else cancelled=1; fi
    say "SIG$1: passing it to the tasks, which checkpoint and exit $EXIT_PREEMPTED"
    if [ -n "$step" ]; then kill -s "$1" "$step" 2> /dev/null; else unsent=$1; fi
}}
trap 'pass_on USR1' USR1
trap 'pass_on TERM' TERM

say "job ${{SLURM_JOB_ID:-?}}${{SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)}}:" \\
    "start $((RESTARTS + 1)) (SLURM_RESTART_COUNT=$RESTARTS, requeued at most $MAX_REQUEUES times)"
# Bad input is refused once, here, with the exit status distxfer gave it (2), before any task
# starts: the tasks would each print the same error, and srun would report a killed one's status.
"${{CHECK[@]}}"
checked=$?
if [ "$checked" != 0 ] && [ -z "$warned$cancelled" ]; then
    say "the config was refused (exit status $checked): not requeued; fix it and submit again"
    exit "$checked"
fi
say "srun ${{STEP[*]:+${{STEP[*]}} }}${{TRAIN[*]}}"
status=$EXIT_PREEMPTED
if [ -z "$warned$cancelled" ]; then
    srun "${{STEP[@]}}" "${{TRAIN[@]}}" &
    step=$!
    if [ -n "$unsent" ]; then kill -s "$unsent" "$step" 2> /dev/null; fi
    while kill -0 "$step" 2> /dev/null; do
        wait "$step"  # returns early whenever a trap has run
    done
    wait "$step"
    status=$?
fi

if [ "$status" = 0 ]; then
    say "training finished"
    exit 0
fi
stopped=""  # by a signal: exit EXIT_PREEMPTED after a checkpoint, or killed by the signal
if [ "$status" = "$EXIT_PREEMPTED" ]; then
    stopped=1
elif [ -n "$warned$cancelled" ] && [ "$status" -gt 128 ]; then
    stopped=1
fi
if [ -z "$stopped" ]; then
    say "training failed (exit status $status): not requeued; fix the cause and submit again" \\
        "(it resumes from the last checkpoint)"
    exit "$status"
fi
if [ -n "$cancelled" ]; then
    say "stopped by SIGTERM (scancel, or the time limit): not requeued; submit again to resume" \\
        "from the last checkpoint"
    exit "$status"
fi
if [ "$RESTARTS" -ge "$MAX_REQUEUES" ]; then
    say "preempted, but not requeued: job requeued $RESTARTS times already, the limit" \\
        "(DISTXFER_MAX_REQUEUES=$MAX_REQUEUES); submit again to resume from the checkpoint"
    exit "$status"
fi
trap '' USR1 TERM  # the requeue ends this job's processes, this shell too: leave quietly
say "preempted after checkpointing: requeueing job $SLURM_JOB_ID" \\
    "(requeue $((RESTARTS + 1)) of at most $MAX_REQUEUES)"
if ! scontrol requeue "$SLURM_JOB_ID"; then
    say "scontrol requeue failed: submit again to resume from the checkpoint"
    exit "$status"
fi
exit 0
"""


def batch_script(
    engine: str,
    resources: JobResources,
    what_to_run: str,
    usage: str,
    *,
    max_requeues: int = MAX_REQUEUES,
) -> str:
    """A whole batch script: header, `#SBATCH` lines, `what_to_run` (shell that sets CONFIG,
    RUN_ARGS and DISTXFER_CMD) and the shared job logic."""
    step = ENGINES[engine]
    header = [
        "#!/bin/bash",
        f"# distxfer on Slurm: {step.summary}.",
        "#",
        *(f"# {line}" if line else "#" for line in usage.splitlines()),
        "#",
        "# Edit the #SBATCH lines below (sbatch options on the command line win over them).",
        f"# {resources.warn_seconds} s before the time limit Slurm sends USR1: the tasks finish"
        " their step,",
        f"# checkpoint and exit {EXIT_PREEMPTED}, and the job requeues itself (at most"
        f" DISTXFER_MAX_REQUEUES={max_requeues}",
        "# times) to resume at that step. scancel stops it the same way without a requeue;",
        "# a failure is not requeued.",
        "# Written by distxfer/slurm/script.py.",
    ]
    engine_args = " ".join(step.srun_args)
    return "\n".join(
        [
            *header,
            *resources.sbatch_lines(),
            "set -u",
            "",
            f"ENGINE={engine}",
            f"ENGINE_SRUN_ARGS=({engine_args})",
            what_to_run.rstrip("\n"),
            "",
            JOB_LOGIC.format(max_requeues=max_requeues, exit_preempted=EXIT_PREEMPTED),
        ]
    )


def generic_script(engine: str) -> str:
    """The script of `slurm/` for `engine`: config, run directory and overrides as arguments."""
    usage = "\n".join(
        [
            f"sbatch slurm/{engine}.sbatch CONFIG [RUN_DIR] [KEY=VALUE ...]",
            f"sbatch --nodes=2 --time=4:00:00 slurm/{engine}.sbatch configs/resnet50.yaml runs/r50",
            "",
            "distxfer is found on PATH (activate its environment before sbatch), as $DISTXFER",
            "or in ./.venv; `distxfer slurm` writes a filled-in copy into the run directory.",
        ]
    )
    return batch_script(engine, JobResources(), ARGUMENTS, usage)


def bash_array(name: str, words: Sequence[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(w) for w in words)})"


def run_script(
    engine: str,
    resources: JobResources,
    *,
    distxfer: Sequence[str],
    config: Path,
    runs: Sequence[Sequence[str]],
    usage: str,
    max_requeues: int = MAX_REQUEUES,
) -> str:
    """A script that trains `config` with the overrides of `runs`: one run is one job, several
    are an array job whose task i trains runs[i] (resources.array must cover them)."""
    lines = [bash_array("DISTXFER_CMD", distxfer), f"CONFIG={shlex.quote(str(config))}"]
    if len(runs) == 1:
        lines.append(bash_array("RUN_ARGS", runs[0]))
    else:
        lines.append('case "${SLURM_ARRAY_TASK_ID:-}" in')
        lines += [f"    {i}) {bash_array('RUN_ARGS', run)} ;;" for i, run in enumerate(runs)]
        lines.append('    *) echo "no run for array task ${SLURM_ARRAY_TASK_ID:-(none)}" >&2')
        lines.append("       exit 2 ;;")
        lines.append("esac")
    what = "\n".join(lines) + "\n"
    return batch_script(engine, resources, what, usage, max_requeues=max_requeues)


def write_generic_scripts(folder: Path) -> list[Path]:
    """Write `slurm/<engine>.sbatch` for every engine (the files in the repository)."""
    paths = []
    for engine in ENGINES:
        path = folder / f"{engine}.sbatch"
        path.write_text(generic_script(engine))
        path.chmod(0o755)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_generic_scripts(Path(__file__).resolve().parents[2] / "slurm"):
        print(written)
