"""Training under a real one-node Slurm cluster: srun starts the workers, distxfer wires them up."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import REPO
from slurm_cluster import SlurmCluster, SlurmUnavailable

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.slurm]
DISTXFER = [sys.executable, "-m", "distxfer"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        running = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))
    yield running
    running.stop()


def train_args(data: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return [
        *DISTXFER,
        "train",
        "-c",
        str(REPO / "configs" / "mnist_mlp.yaml"),
        f"data.train_dir={data['train']}",
        f"data.val_dir={data['val']}",
        "data.val_split=0",
        "data.image_size=[16, 16]",
        "data.color_mode=rgb",
        "data.batch_size=4",
        f"output.run_dir={run_dir}",
        "phases=[{epochs: 1, trainable: all}]",
        "engine.threads=1",
        *extra,
    ]


def srun_train(
    cluster: SlurmCluster, srun_args: list[str], data, run_dir: Path, *extra: str
) -> str:
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = cluster.srun("--label", "-n2", *srun_args, *train_args(data, run_dir, *extra), env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + cluster.log_tail()
    return output


def chief_only_outputs(run_dir: Path, output: str) -> None:
    assert len(list((run_dir / "tensorboard" / "train").iterdir())) == 1
    assert (run_dir / "model.keras").exists()
    rank1 = [line[3:] for line in output.splitlines() if line.startswith("1: ")]
    assert not [line for line in rank1 if re.search(r" INFO |^Epoch|/step", line)], rank1


def test_multiworker_under_srun_derives_tf_config_from_slurm(cluster, tiny_data, tmp_path):
    output = srun_train(cluster, [], tiny_data, tmp_path / "run", "engine.name=multiworker")
    assert "TF_CONFIG built from Slurm's variables" in output
    assert "engine multiworker: 2 process(es)" in output
    chief_only_outputs(tmp_path / "run", output)


def test_multiworker_under_srun_pmix_exchanges_addresses_with_mpi4py(cluster, tiny_data, tmp_path):
    output = srun_train(
        cluster, ["--mpi=pmix"], tiny_data, tmp_path / "run", "engine.name=multiworker"
    )
    assert "TF_CONFIG built from srun with mpi4py" in output
    chief_only_outputs(tmp_path / "run", output)


def test_horovod_is_chosen_and_runs_under_srun_pmix(cluster, tiny_data, tmp_path):
    output = srun_train(cluster, ["--mpi=pmix"], tiny_data, tmp_path / "run")
    assert (
        "engine horovod: 2 process(es)" in output and "started by srun with 2 processes" in output
    )
    chief_only_outputs(tmp_path / "run", output)


def test_horovod_under_plain_srun_stops_with_advice_instead_of_running_twice(
    cluster, tiny_data, tmp_path
):
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = cluster.srun(
        "--label", "-n2", *train_args(tiny_data, tmp_path / "run", "engine.name=horovod"), env=env
    )
    assert result.returncode != 0
    assert (
        "engine horovod under srun needs PMIx to start MPI: use `srun --mpi=pmix ...`"
        in result.stderr
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
