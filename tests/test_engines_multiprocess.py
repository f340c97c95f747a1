"""Every engine, in real processes on this machine: 2 workers train exactly like 1, and agree.

horovodrun with gloo, mpirun (OpenMPI) driving Horovod, MultiWorkerMirroredStrategy with TF_CONFIG
on loopback ports, and MirroredStrategy over two logical CPU devices. Each run uses the real
Trainer through tests/workers/train_worker.py, which gives every rank its own run directory.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env

from distxfer import launchers
from distxfer.checkpoint import CheckpointStore
from distxfer.launchers import ProcessSpec

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
WORKER = str(REPO / "tests" / "workers" / "train_worker.py")
ENGINES = ["horovod-gloo", "horovod-mpi", "multiworker", "mirrored"]


def worker_overrides(data: dict[str, Path], batch: int, engine: str, *extra: str) -> list[str]:
    """Deterministic training: no shuffle randomness beyond the seed, no dropout or augmentation."""
    return [
        f"data.train_dir={data['train']}",
        f"data.val_dir={data['val']}",
        "data.image_size=[16, 16]",
        f"data.batch_size={batch}",
        "model.backbone=mlp",
        "model.weights=null",
        "model.head.hidden_units=32",
        "model.head.pooling=flatten",
        "output.image_grid=0",
        "output.log_every_steps=3",
        "seed=5",
        f"engine.name={engine}",
        "engine.threads=1",
        "phases=[{name: a, epochs: 2, trainable: all, optimizer: sgd, momentum: 0.9,"
        " learning_rate: 0.05, lr_scaling: none, schedule: constant}]",
        *extra,
    ]


def commands(kind: str, args: list[str]) -> list[ProcessSpec]:
    """The processes to start for 2 workers of `kind` (run with cli_env())."""
    python = [sys.executable, WORKER, *args]
    if kind == "horovod-gloo":
        return launchers.horovodrun([*python, "engine.name=horovod"], n=2, controller="gloo")
    if kind == "horovod-mpi":
        program = [*python, "engine.name=horovod"]
        return launchers.mpirun(program, n=2, oversubscribe=True, env=cli_env())
    if kind == "multiworker":
        return launchers.tf_config_workers([*python, "engine.name=multiworker"], n=2)
    if kind == "mirrored":
        return launchers.mirrored([*python, "engine.name=mirrored", "engine.cpu_replicas=2"])
    return [ProcessSpec([*python, "engine.name=single"])]


def run_workers(
    kind: str, report: Path, run_root: Path, overrides: list[str], *flags: str
) -> list[dict]:
    args = ["--report-dir", str(report), "--run-root", str(run_root), *flags, *overrides]
    processes = commands(kind, args)
    output = io.StringIO()
    try:
        status = launchers.supervise(processes, env=cli_env(), cwd=REPO, output=output, timeout=420)
    except TimeoutError:
        pytest.fail(f"{kind} workers hung:\n" + output.getvalue()[-6000:])
    if status:  # the end of each worker's output ([worker i] lines; mpirun tags its ranks)
        lines = output.getvalue().splitlines()
        prefixes = [f"[worker {i}] " for i in range(len(processes))] if len(processes) > 1 else [""]
        tails = ["\n".join(x for x in lines if x.startswith(p))[-6000:] for p in prefixes]
        pytest.fail(f"{kind} workers failed with status {status}:\n" + "\n".join(tails))
    ranks = sorted(report.glob("rank*.npz"))
    return [dict(np.load(path)) for path in ranks]


def weights(dump: dict, replica: int = 0, when: str = "r") -> list[np.ndarray]:
    """A replica's weights after training (`when="r"`) or before it (`"i"`)."""
    return [dump[k] for k in sorted(dump) if k.startswith(f"{when}{replica}_")]


def assert_trained(dump: dict, replica: int = 0) -> None:
    """Every variable moved away from the weights training started from."""
    before, after = weights(dump, replica, "i"), weights(dump, replica)
    assert len(before) == len(after) > 0
    for start, end in zip(before, after):
        assert not np.allclose(start, end, atol=1e-4), "a variable did not train"


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> dict:
    """One worker, one replica, at the same global batch (8) as the 2-worker runs."""
    root = tmp_path_factory.mktemp("reference")
    (dump,) = run_workers(
        "single", root / "report", root / "runs", worker_overrides(tiny_data, 8, "single")
    )
    return dump


@pytest.mark.parametrize("kind", ENGINES)
def test_two_workers_train_exactly_like_one_and_agree(kind, tiny_data, reference, tmp_path):
    dumps = run_workers(
        kind, tmp_path / "report", tmp_path / "runs", worker_overrides(tiny_data, 4, kind)
    )
    replicas = [weights(d, r) for d in dumps for r in range(2 if kind == "mirrored" else 1)]
    assert len(replicas) == 2 and int(dumps[0]["replicas"]) == 2
    for a, b in zip(*replicas):
        assert np.array_equal(a, b), "replicas hold different weights after training"
    for start, want_start in zip(weights(dumps[0], 0, "i"), weights(reference, 0, "i")):
        assert np.array_equal(start, want_start), "2 workers started from other weights"
    for got, want in zip(replicas[0], weights(reference)):
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg="2 workers diverged from 1 worker")
    assert_trained(reference)
    assert_trained(dumps[0])


@pytest.mark.parametrize("kind", ENGINES)
def test_each_sample_once_per_epoch_and_exact_evaluation_counts(kind, tiny_data, tmp_path):
    dumps = run_workers(
        kind,
        tmp_path / "report",
        tmp_path / "runs",
        worker_overrides(tiny_data, 4, kind, "phases.0.epochs=1"),
    )
    ids = np.concatenate([d["ids"] for d in dumps])
    assert sorted(ids.tolist()) == list(range(72))  # 3 classes x 24 training images, none twice
    assert all(
        int(d["eval_count"]) == 15 for d in dumps
    )  # 15 validation images: not a multiple of 8
    assert {float(d["eval_accuracy"]) for d in dumps} == {float(dumps[0]["eval_accuracy"])}


@pytest.mark.parametrize("kind", ["horovod-gloo", "multiworker"])
def test_only_rank_zero_writes_a_run_directory(kind, tiny_data, tmp_path):
    run_workers(
        kind,
        tmp_path / "report",
        tmp_path / "runs",
        worker_overrides(
            tiny_data, 4, kind, "phases.0.epochs=1", "output.checkpoint_every_steps=3"
        ),
    )
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["rank0"]
    written = {
        p.relative_to(tmp_path / "runs" / "rank0").parts[0]
        for p in (tmp_path / "runs" / "rank0").rglob("*")
    }
    assert written == {
        "checkpoints"
    }  # the Trainer alone; the CLI adds TensorBoard (tests/test_launchers.py)


@pytest.mark.parametrize("kind", ENGINES)
def test_a_resumed_two_worker_run_restores_the_same_state_everywhere(kind, tiny_data, tmp_path):
    overrides = worker_overrides(tiny_data, 4, kind, "output.stop_check_steps=2")
    first = run_workers(
        kind, tmp_path / "first", tmp_path / "runs", [*overrides, "max_train_seconds=0.001"]
    )
    assert {str(d["outcome"]) for d in first} == {"time"}
    store = CheckpointStore(
        tmp_path / "runs" / "rank0" / "checkpoints",
        keep=3,
        best_metric="val_accuracy",
        writer=False,
    )
    stopped = store.latest()
    assert stopped.state.reason == "time" and 0 < stopped.state.global_step < 18
    run_workers(kind, tmp_path / "second", tmp_path / "runs", overrides, "--dump-restored")
    restored = [dict(np.load(p)) for p in sorted((tmp_path / "second").glob("restored_rank*.npz"))]
    assert len(restored) == (1 if kind == "mirrored" else 2)
    for dump in restored:
        assert int(dump["step"]) == int(dump["iterations"]) == stopped.state.global_step
        for replica in range(2 if kind == "mirrored" else 1):
            for got, want in zip(weights(dump, replica), stopped.model):
                assert np.array_equal(got, want)


def test_horovod_build_has_gloo_and_mpi():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import horovod.tensorflow as h; print(h.gloo_built(), h.mpi_built())",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]
    assert shutil.which("mpirun") and os.access(
        Path(sys.executable).with_name("horovodrun"), os.X_OK
    )


def test_horovod_fp16_gradient_compression_keeps_ranks_identical(tiny_data, reference, tmp_path):
    dumps = run_workers(
        "horovod-gloo",
        tmp_path / "report",
        tmp_path / "runs",
        worker_overrides(tiny_data, 4, "horovod", "engine.fp16_allreduce=true"),
    )
    first, second = (weights(d) for d in dumps)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    for got, want in zip(first, weights(reference)):  # float16 on the wire: close, not bit-equal
        np.testing.assert_allclose(got, want, atol=5e-3)
    assert_trained(dumps[0])


def test_one_worker_accumulating_two_micro_batches_trains_like_two_workers(tiny_data, tmp_path):
    accumulating = worker_overrides(tiny_data, 4, "single", "data.global_batch=8")
    (one,) = run_workers("single", tmp_path / "one", tmp_path / "runs1", accumulating)
    two = run_workers("horovod-gloo", tmp_path / "two", tmp_path / "runs2", accumulating)
    assert sorted(one["ids"].tolist()) == sorted(np.concatenate([d["ids"] for d in two]).tolist())
    for got, want in zip(weights(one), weights(two[0])):
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg="accumulation changed training")
    assert_trained(one)


def test_a_run_resumes_on_twice_the_workers_with_half_the_accumulation(
    tiny_data, reference, tmp_path
):
    overrides = worker_overrides(tiny_data, 4, "single", "data.global_batch=8")
    stop_early = [*overrides, "output.stop_check_steps=2", "max_train_seconds=0.001"]
    (first,) = run_workers("single", tmp_path / "first", tmp_path / "runs", stop_early)
    assert str(first["outcome"]) == "time"
    checkpoints = tmp_path / "runs" / "rank0" / "checkpoints"
    store = CheckpointStore(checkpoints, keep=3, best_metric="", writer=False)
    assert store.latest().state.position.step == 2  # mid-epoch, after 2 accumulating steps
    resumed = run_workers("horovod-gloo", tmp_path / "second", tmp_path / "runs", overrides)
    for got, want in zip(weights(resumed[0]), weights(reference)):  # reference: 1 worker, batch 8
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg="the resumed run diverged")


def test_every_rank_stops_early_at_the_same_epoch(tiny_data, swapped_val, tmp_path):
    rule = "early_stopping: {metric: val_loss, patience: 1}"
    overrides = worker_overrides(
        tiny_data,
        4,
        "horovod",
        f"data.val_dir={swapped_val}",
        f"phases=[{{name: a, epochs: 6, trainable: all, learning_rate: 0.05, {rule}}}]",
    )
    dumps = run_workers("horovod-gloo", tmp_path / "report", tmp_path / "runs", overrides)
    assert {len(d["ids"]) for d in dumps} == {72}  # 2 of 6 epochs: 2 x 72 samples over 2 ranks
    for a, b in zip(weights(dumps[0]), weights(dumps[1])):
        assert np.array_equal(a, b)
