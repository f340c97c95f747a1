"""`python -m distxfer.launchers RECIPE ...`: the command line the launch/*.sh scripts run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distxfer.launchers import (
    ProcessSpec,
    default_np,
    horovodrun,
    mirrored,
    mpirun,
    tf_config_workers,
    train_program,
)
from distxfer.launchers.supervise import supervise

Option = tuple[tuple[str, ...], dict]
COMMON: list[Option] = [
    (("--script",), {"help": "the launch/ script running this: -h prints its header comment"}),
    (("--distxfer",), {"help": "the distxfer command for TRAIN_ARGS (default: next to Python)"}),
]
RECIPES: dict[str, tuple[str, list[Option]]] = {
    "horovodrun": (
        "Horovod with horovodrun: one process per GPU here, or across hosts (engine horovod).",
        [
            (("-np", "--num-proc"), {"dest": "n", "type": int, "help": "processes (one per GPU)"}),
            (("-H", "--hosts"), {"help": "host:slots,... (default localhost:N)"}),
            (("--gloo",), {"dest": "controller", "action": "store_const", "const": "gloo"}),
            (("--mpi",), {"dest": "controller", "action": "store_const", "const": "mpi"}),
        ],
    ),
    "mpirun": (
        "OpenMPI's mpirun driving Horovod, or MultiWorkerMirroredStrategy with --multiworker.",
        [
            (("-np", "-n"), {"dest": "n", "type": int, "help": "processes (one per GPU)"}),
            (("-H", "--host"), {"dest": "hosts", "help": "host:slots,..."}),
            (("--multiworker",), {"action": "store_true", "help": "engine multiworker"}),
            (("--oversubscribe",), {"action": "store_true", "help": "more ranks than cores"}),
        ],
    ),
    "tf-config": (
        "MultiWorkerMirroredStrategy: N local workers with TF_CONFIG on loopback ports.",
        [(("-n", "-np"), {"dest": "n", "type": int, "default": 2, "help": "workers (2)"})],
    ),
    "mirrored": (
        "MirroredStrategy: one process over every local GPU, or N logical CPU devices.",
        [
            (
                ("--cpu-replicas",),
                {"type": int, "default": 2, "help": "CPU devices without a GPU (2)"},
            )
        ],
    ),
}


def _parser(recipe: str) -> argparse.ArgumentParser:
    description, options = RECIPES[recipe]
    parser = argparse.ArgumentParser(
        prog=f"python -m distxfer.launchers {recipe}",
        description=description,
        usage="%(prog)s [options] (-- PROGRAM... | TRAIN_ARGS...)",
        epilog="TRAIN_ARGS (from the first argument that is not an option above, e.g. -c CONFIG)"
        " go to `distxfer train` after engine.name=ENGINE; after --, PROGRAM runs as given.",
        allow_abbrev=False,
    )
    for names, kwargs in [*COMMON, *options]:
        parser.add_argument(*names, **kwargs)
    return parser


def _split(recipe: str, argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(the recipe's options, the rest, whether the rest is a whole PROGRAM after `--`)."""
    takes_value = {
        name: kwargs.get("action") is None
        for names, kwargs in [*COMMON, *RECIPES[recipe][1]]
        for name in names
    }
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            return argv[:index], argv[index + 1 :], True
        if arg in ("-h", "--help"):
            index += 1
        elif arg in takes_value:
            index += 2 if takes_value[arg] else 1
        else:
            break
    return argv[:index], argv[index:], False


def _usage(script: str) -> str:
    """A launch/ script's header comment: the lines after the shebang that start with #."""
    lines = Path(script).read_text().splitlines()[1:]
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    return "\n".join(header)


def build(recipe: str, args: argparse.Namespace, rest: list[str], whole: bool) -> list[ProcessSpec]:
    """The processes a command line asks for: `rest` is TRAIN_ARGS, or the PROGRAM if `whole`."""
    engines = {"horovodrun": "horovod", "tf-config": "multiworker", "mirrored": "mirrored"}
    engine = engines.get(recipe) or ("multiworker" if args.multiworker else "horovod")
    if whole:
        program = rest
    else:
        replicas = args.cpu_replicas if recipe == "mirrored" else None
        program = train_program(engine, rest, distxfer=args.distxfer, cpu_replicas=replicas)
    if recipe == "mirrored":
        return mirrored(program)
    if recipe == "tf-config":
        return tf_config_workers(program, n=args.n)
    n = args.n if args.n is not None else default_np()
    if recipe == "horovodrun":
        return horovodrun(program, n=n, hosts=args.hosts, controller=args.controller)
    return mpirun(program, n=n, hosts=args.hosts, oversubscribe=args.oversubscribe)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in RECIPES:
        top = argparse.ArgumentParser(
            prog="python -m distxfer.launchers",
            description="Start distxfer's processes: " + "; ".join(RECIPES) + ".",
            epilog="See `python -m distxfer.launchers RECIPE -h`.",
        )
        top.add_argument("recipe", choices=sorted(RECIPES))
        top.parse_args(argv[:1])  # prints help or the error, and exits
        return 2
    recipe = argv.pop(0)
    parser = _parser(recipe)
    options, rest, whole = _split(recipe, argv)
    script = options[options.index("--script") + 1] if "--script" in options[:-1] else None
    if script:  # errors and help speak for the launch/ script
        parser.prog = Path(script).name
        parser.usage = "%(prog)s [options] -c CONFIG [overrides]"
    if "-h" in options or "--help" in options:
        print(_usage(script) if script else parser.format_help())
        return 0
    args = parser.parse_args(options)
    name = parser.prog
    if not rest:
        what = "PROGRAM" if whole else "-c CONFIG [overrides] for distxfer train"
        print(f"{name}: pass {what}", file=sys.stderr)
        return 2
    processes = build(recipe, args, rest, whole)
    for process in processes:
        print(f"[launch] {process.command_line()}", flush=True)
    try:
        return supervise(processes)
    except FileNotFoundError as exc:
        print(f"{name}: {exc.filename}: command not found", file=sys.stderr)
        return 127
    except PermissionError as exc:
        print(f"{name}: {exc.filename}: permission denied", file=sys.stderr)
        return 126
