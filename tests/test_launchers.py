"""launch/*.sh start real multi-worker runs of `distxfer train`; only rank 0 writes or talks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
TF_NOISE = re.compile(
    r"I0000|W0000|WARNING: All log messages|To enable the following instructions|oneDNN"
)

LAUNCHERS = {
    "horovodrun": (
        ["launch/horovodrun.sh", "--gloo", "-np", "2"],
        "horovod",
        re.compile(r"^\[1\]<(stdout|stderr)>:(.*)$"),
    ),
    "mpirun": (
        ["launch/mpirun.sh", "-np", "2"],
        "horovod",
        re.compile(r"^\[1,1\]<(stdout|stderr)>:(.*)$"),  # OpenMPI's --tag-output: [job,rank]
    ),
    "multiworker": (
        ["launch/multiworker_local.sh", "-n", "2"],
        "multiworker",
        re.compile(r"^\[worker 1\] (.*)$"),
    ),
    "mirrored": (["launch/mirrored.sh", "--cpu-replicas", "2"], "mirrored", None),
}
# Printed by the chief alone, once per run: a second process or replica talking repeats them.
CHIEF_ONCE = [re.compile(r"Epoch 1/1(?!\d)"), re.compile(r" INFO phase 1 '")]
# horovodrun's and mpirun's tag, written before each piece of a rank's output: a line written
# in two pieces (print's text, then its newline) carries two tags.
RANK_TAG = re.compile(r"\[\d+(?:,\d+)?\]<std(?:out|err)>:")


def run_launcher(name: str, data: dict[str, Path], run_dir: Path) -> str:
    command = LAUNCHERS[name][0]
    overrides = [
        f"data.train_dir={data['train']}",
        f"data.val_dir={data['val']}",
        "data.val_split=0",
        "data.image_size=[16, 16]",
        "data.color_mode=rgb",
        "data.batch_size=4",
        f"output.run_dir={run_dir}",
        "phases=[{epochs: 1, trainable: all}]",
        "engine.threads=1",
        "output.checkpoint_every_steps=3",
    ]
    result = subprocess.run(
        [*command, "-c", "configs/mnist_mlp.yaml", *overrides],
        cwd=REPO,
        env=cli_env(PYTHONUNBUFFERED="1"),  # every print a write of its own: see RANK_TAG
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert (
        output.startswith("[launch] ") or "\n[launch] " in output
    )  # each launcher says what it runs
    return output


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_runs_training_and_only_the_chief_writes_and_talks(name, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    output = run_launcher(name, tiny_data, run_dir)
    assert {p.name for p in run_dir.iterdir()} == {
        ".lock",  # the chief's run lock (released; a later run takes it)
        "config.yaml",
        "classes.json",
        "checkpoints",
        "tensorboard",
        "eval",
        "model.keras",
        "model.json",
        "status.json",
        "train.log",
    }
    for writer in ("train", "validation"):  # a second process writing would add its own events file
        assert len(list((run_dir / "tensorboard" / writer).iterdir())) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.npz",
        "ckpt-000000003.npz",
        "ckpt-000000006.npz",
        "ckpt-000000009.npz",
    ]
    assert (
        yaml.safe_load((run_dir / "config.yaml").read_text())["engine"]["name"]
        == LAUNCHERS[name][1]
    )
    assert "engine " + LAUNCHERS[name][1] + ": 2 process(es)" in output or name == "mirrored"
    for once in CHIEF_ONCE:
        assert len(once.findall(output)) == 1, (once.pattern, output[-6000:])
    torn = [line for line in output.splitlines() if len(RANK_TAG.findall(line)) > 1]
    assert not torn, torn[:5]
    pattern = LAUNCHERS[name][2]
    if pattern is None:
        return
    from_rank1 = [
        m.group(m.lastindex) for line in output.splitlines() if (m := pattern.match(line))
    ]
    chatter = [line for line in from_rank1 if line.strip() and not TF_NOISE.search(line)]
    assert all(re.match(r"\[rank 1\] \S+ (WARNING|ERROR) ", line) for line in chatter), chatter


def test_multiworker_under_mpirun_exchanges_addresses_with_mpi4py(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        f"data.train_dir={tiny_data['train']}",
        f"data.val_dir={tiny_data['val']}",
        "data.val_split=0",
        "data.image_size=[16, 16]",
        "data.color_mode=rgb",
        "data.batch_size=4",
        f"output.run_dir={run_dir}",
        "phases=[{epochs: 1, trainable: all}]",
        "engine.threads=1",
    ]
    result = subprocess.run(
        [
            "launch/mpirun.sh",
            "--multiworker",
            "-np",
            "2",
            "-c",
            "configs/mnist_mlp.yaml",
            *overrides,
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "TF_CONFIG built from mpirun with mpi4py" in output
    assert "engine multiworker: 2 process(es)" in output
    assert len(list((run_dir / "tensorboard" / "train").iterdir())) == 1
