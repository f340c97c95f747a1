"""A sweep: one config trained once per combination of override values, each run in its own run
directory under one folder, listed in `<folder>/sweep.json`.

    axes = [parse_axis("phases.head.learning_rate=1e-3,3e-4"), parse_axis("data.batch_size=32,64")]
    sweep = Sweep(Path("runs/lr"), "configs/resnet50.yaml", [], grid(axes))
    sweep.run_dir(sweep.trials[0])     # runs/lr/000_learning_rate=1e-3_batch_size=32

A trial is only a name and the overrides that set it apart, so anything that makes a list of
runs of one config (a grid here; folds for cross-validation) builds `Trial`s. `distxfer slurm
--sweep` submits a sweep as one array job; `distxfer runs FOLDER` tabulates its runs.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distxfer.atomic import write_bytes
from distxfer.config import Config, load_config
from distxfer.errors import ConfigError
from distxfer.run import check_run_dir

MANIFEST = "sweep.json"


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its folder name and the overrides that set it apart."""

    name: str
    overrides: tuple[str, ...]


@dataclass
class Sweep:
    """The runs of one config under one folder."""

    folder: Path
    config: str  # the config file every run starts from
    common: list[str]  # overrides every run shares
    trials: list[Trial]
    jobs: list[str] = field(default_factory=list)  # Slurm (array) job ids it was submitted as

    def run_dir(self, trial: Trial) -> Path:
        return self.folder / trial.name

    def train_overrides(self, trial: Trial) -> list[str]:
        """The overrides `distxfer train -c CONFIG` takes for `trial` (its run directory last)."""
        return [*self.common, *trial.overrides, f"output.run_dir={self.run_dir(trial)}"]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "common": self.common,
            "trials": [asdict(t) | {"overrides": list(t.overrides)} for t in self.trials],
            "jobs": self.jobs,
        }

    def write(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / MANIFEST
        write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())
        return path

    @classmethod
    def read(cls, folder: Path) -> Sweep | None:
        """The sweep listed in `folder`, or None where there is none."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            trials = [Trial(t["name"], tuple(t["overrides"])) for t in record["trials"]]
            return cls(
                Path(folder),
                record["config"],
                list(record["common"]),
                trials,
                list(record.get("jobs", [])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a distxfer sweep list ({exc}); remove it") from None

    def same_runs(self, other: Sweep) -> bool:
        return (self.config, self.common, self.trials) == (other.config, other.common, other.trials)


def parse_axis(text: str) -> tuple[str, list[str]]:
    """`KEY=V1,V2,...` as (KEY, [V1, V2, ...]); commas inside [] {} or quotes do not split."""
    key, sep, values = text.partition("=")
    key = key.strip()
    parts = split_values(values)
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", key) or not all(parts):
        raise ConfigError(
            f"--sweep {text!r} is not KEY=VALUE1,VALUE2,...; e.g."
            " --sweep 'phases.head.learning_rate=1e-3,3e-4'"
        )
    return key, parts


def split_values(text: str) -> list[str]:
    """Split on the commas that are outside brackets, braces and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [*parts, current.strip()]


def grid(axes: list[tuple[str, list[str]]]) -> list[Trial]:
    """One trial per combination of the axes' values, the last axis changing fastest."""
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--sweep names a key twice ({', '.join(keys)}); give each key once")
    short = [key.rsplit(".", 1)[-1] for key in keys]
    labels = short if len(set(short)) == len(short) else keys
    trials = []
    for index, values in enumerate(itertools.product(*(values for _, values in axes))):
        words = [f"{label}={value}" for label, value in zip(labels, values)]
        name = re.sub(r"[^\w.=+-]+", "-", "_".join([f"{index:03d}", *words]))[:120]
        trials.append(Trial(name, tuple(f"{k}={v}" for k, v in zip(keys, values))))
    return trials


def plan_sweep(
    config_path: Path, overrides: list[str], config: Config, trials: list[Trial]
) -> Sweep:
    """The sweep under the config's run directory; every run's config and folder checked."""
    sweep = Sweep(Path(config.output.run_dir).resolve(), str(config_path), overrides, trials)
    for trial in sweep.trials:
        check_trial(sweep, trial)
    # Listed before the manifest is read: in a multi-process launch the chief may be writing
    # the manifest meanwhile, and it lands before anything else the chief puts there.
    contents = visible_entries(sweep.folder)
    earlier = Sweep.read(sweep.folder)
    if earlier is not None:
        if not earlier.same_runs(sweep):
            raise ConfigError(
                f"{sweep.folder} holds another sweep (see its sweep.json); use a new"
                " output.run_dir, or the same config, overrides and runs to resume it"
            )
        sweep.jobs = earlier.jobs
    elif contents:
        raise ConfigError(
            f"output.run_dir {sweep.folder} exists and is not a sweep folder; choose another"
        )
    return sweep


def visible_entries(folder: Path) -> list[str]:
    """The names in `folder` that are not hidden (an atomic write's temporary is hidden)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def check_trial(sweep: Sweep, trial: Trial) -> None:
    try:
        config = load_config(Path(sweep.config), sweep.train_overrides(trial))
    except ConfigError as exc:
        raise ConfigError(f"sweep run {trial.name}: {exc}") from None
    check_run_dir(sweep.run_dir(trial), config, allow_config_change=False)
