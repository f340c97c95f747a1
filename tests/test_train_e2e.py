"""`distxfer train` end to end in real processes: outputs, TensorBoard, resume after a kill,
signals."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli_env, run_cli, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_once(tiny_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run_cli("train", "-c", "configs/mnist_mlp.yaml", *tiny_overrides(tiny_data, run_dir))
    return run_dir


@pytest.fixture
def trained_run(trained_once, tmp_path) -> Path:
    """A copy of the trained run that this test owns (and may change)."""
    return Path(shutil.copytree(trained_once, tmp_path / "tiny"))


def test_training_writes_a_complete_run_directory(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "config.yaml",
        "classes.json",
        "checkpoints",
        "tensorboard",
        "eval",
        "model.keras",
        "model.json",
        "train.log",
    } <= names
    assert json.loads((trained_run / "classes.json").read_text()) == ["blue", "green", "red"]
    checkpoints = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert "best.npz" in checkpoints and "ckpt-000000036.npz" in checkpoints  # 2 epochs x 18 steps


def test_a_finished_run_records_its_state_and_distxfer_runs_shows_it(trained_run):
    status = json.loads((trained_run / "status.json").read_text())
    assert (status["state"], status["outcome"]) == ("finished", "finished")
    header, row = run_cli("runs", str(trained_run)).stdout.splitlines()
    assert header.split()[:4] == ["run", "overrides", "state", "step"]
    assert row.split()[:4] == ["tiny", "-", "finished", "36"]


def test_final_report_counts_every_test_image_and_the_model_learned(trained_run):
    report = json.loads((trained_run / "eval" / "test.json").read_text())
    assert report["samples"] == 21  # 3 classes x 7, through padded batches of 4
    assert sum(row["support"] for row in report["per_class"]) == 21
    assert report["metrics"]["accuracy"] > 0.8
    assert (trained_run / "eval" / "test_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def read_events(directory: Path):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(directory), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def test_tensorboard_events_read_back_with_tensorboard_reader(trained_run):
    train = read_events(trained_run / "tensorboard" / "train")
    validation = read_events(trained_run / "tensorboard" / "validation")
    scalars = set(train.PluginTagToContent("scalars"))
    assert {
        "loss",
        "accuracy",
        "learning_rate",
        "images_per_second",
        "epoch_loss",
        "epoch_accuracy",
    } <= scalars
    assert [e.step for e in train.Tensors("loss")] == [5, 10, 15, 20, 25, 30, 35]
    from tensorboard.util import tensor_util

    accuracy = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in train.Tensors("accuracy")]
    assert all(0 <= a <= 1 for a in accuracy) and accuracy[-1] > accuracy[0]
    grid = train.Tensors("augmented_inputs/only")[0]
    assert (
        "augmented_inputs/only" in train.PluginTagToContent("images")
        and grid.tensor_proto.string_val
    )
    assert "config" in train.PluginTagToContent("text")
    # the config as hparams of this run, at the root so the HParams tab sees train/ and validation/
    assert read_events(trained_run / "tensorboard").PluginTagToContent("hparams")
    assert "epoch_accuracy" in validation.PluginTagToContent("scalars")
    assert [e.step for e in validation.Tensors("epoch_accuracy")] == [1, 2]
    assert {"confusion_matrix/validation", "confusion_matrix/test"} <= (
        set(validation.PluginTagToContent("images")) | set(train.PluginTagToContent("images"))
    )


def test_predict_writes_top_k_rows_from_a_run_and_from_an_export(trained_run, tiny_data, tmp_path):
    out = tmp_path / "from_run.csv"
    run_cli("predict", str(trained_run), str(tiny_data["test"]), "-o", str(out), "-k", "2")
    rows = out.read_text().splitlines()
    assert rows[0] == "path,class_1,probability_1,class_2,probability_2,error"
    assert len(rows) == 1 + 21
    correct = sum(Path(r.split(",")[0]).parent.name == r.split(",")[1] for r in rows[1:])
    assert correct >= 17
    again = tmp_path / "from_export.csv"
    run_cli(
        "predict",
        str(trained_run / "model.keras"),
        str(tiny_data["test"]),
        "-o",
        str(again),
        "-k",
        "2",
    )
    assert again.read_text() == out.read_text()


def test_export_round_trips_reproduce_the_model_outputs(trained_run, tmp_path):
    run_cli("export", str(trained_run), "-o", str(tmp_path / "export"))
    script = f"""
import numpy as np, keras, tensorflow as tf
from distxfer.inference import trained_model
from distxfer.models import probability_model
from pathlib import Path
model, *_ = trained_model(Path({str(trained_run)!r}))
x = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype("uint8")
expected = np.asarray(probability_model(model)(x))
reloaded = keras.models.load_model({str(tmp_path / "export" / "model.keras")!r})
served = tf.saved_model.load({str(tmp_path / "export" / "savedmodel")!r}).signatures["serve"]
got_keras = np.asarray(reloaded(x))
got_saved = list(served(images=tf.constant(x)).values())[0].numpy()
print(float(np.abs(expected - got_keras).max()), float(np.abs(expected - got_saved).max()))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    keras_diff, saved_diff = map(float, out.stdout.split()[-2:])
    assert keras_diff < 1e-6 and saved_diff < 1e-6
    assert json.loads((tmp_path / "export" / "savedmodel.json").read_text())["class_names"] == [
        "blue",
        "green",
        "red",
    ]


def test_evaluate_command_writes_a_report_for_other_folders(trained_run, tiny_data):
    result = run_cli(
        "evaluate", str(trained_run), "--data", str(tiny_data["val"]), "--checkpoint", "best"
    )
    assert "accuracy=" in result.stdout
    report = json.loads(
        (trained_run / "eval" / f"evaluate_{tiny_data['val'].name}.json").read_text()
    )
    assert report["samples"] == 15 and "best checkpoint" in report["checkpoint"]


def test_training_a_finished_run_again_trains_nothing(trained_run, tiny_data):
    before = sorted((trained_run / "checkpoints").iterdir())
    result = run_cli(
        "train", "-c", "configs/mnist_mlp.yaml", *tiny_overrides(tiny_data, trained_run)
    )
    assert "already finished at step 36" in result.stderr
    assert sorted((trained_run / "checkpoints").iterdir()) == before


def test_a_different_config_in_an_existing_run_directory_is_refused(trained_run, tiny_data):
    result = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(tiny_data, trained_run, "data.batch_size=8"),
        check=False,
    )
    assert result.returncode == 2
    assert "holds a run with a different config (data.batch_size" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def checkpoint_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name[5:14]) for p in folder.glob("ckpt-*.npz")) if folder.is_dir() else []


def start_training(data, run_dir: Path, *extra: str) -> subprocess.Popen:
    args = tiny_overrides(
        data,
        run_dir,
        "output.checkpoint_every_steps=3",
        "output.stop_check_steps=1",
        "phases.0.epochs=3",
        "data.batch_size=1",
        *extra,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "distxfer", "train", "-c", "configs/mnist_mlp.yaml", *args],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(
    process: subprocess.Popen, run_dir: Path, at_least: int, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(step >= at_least for step in checkpoint_steps(run_dir)):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before step {at_least}:\n{process.stderr.read()[-3000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no checkpoint appeared in time")


def final_weights(run_dir: Path) -> list[np.ndarray]:
    from distxfer.checkpoint import CheckpointStore

    store = CheckpointStore(
        run_dir / "checkpoints", keep=3, best_metric="val_accuracy", writer=False
    )
    snapshot = store.latest()
    assert snapshot.state.finished
    return snapshot.model


def test_resume_after_sigkill_continues_at_the_last_checkpoint_step(tiny_data, tmp_path):
    run_dir = tmp_path / "killed"
    process = start_training(tiny_data, run_dir)
    wait_for_checkpoint(process, run_dir, at_least=9)
    process.kill()
    process.wait()
    resumed_at = max(checkpoint_steps(run_dir))
    assert resumed_at % 72 != 0  # mid-epoch: 72 steps per epoch at batch 1
    result = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(
            tiny_data,
            run_dir,
            "output.checkpoint_every_steps=3",
            "output.stop_check_steps=1",
            "phases.0.epochs=3",
            "data.batch_size=1",
        ),
    )
    assert f"resuming from step {resumed_at} " in result.stderr
    assert f"resuming at step {resumed_at % 72}" in result.stdout
    reference = tmp_path / "uninterrupted"
    run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(
            tiny_data,
            reference,
            "output.checkpoint_every_steps=3",
            "output.stop_check_steps=1",
            "phases.0.epochs=3",
            "data.batch_size=1",
        ),
    )
    for resumed, straight in zip(final_weights(run_dir), final_weights(reference)):
        np.testing.assert_allclose(resumed, straight, atol=1e-5)


def test_sigterm_checkpoints_the_current_step_and_exits_75(tiny_data, tmp_path):
    run_dir = tmp_path / "preempted"
    process = start_training(tiny_data, run_dir)
    wait_for_checkpoint(process, run_dir, at_least=6)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr[-3000:]
    from distxfer.checkpoint import CheckpointStore

    latest = CheckpointStore(
        run_dir / "checkpoints", keep=3, best_metric="val_accuracy", writer=False
    ).latest()
    assert latest.state.reason == "signal" and not latest.state.finished
    assert json.loads((run_dir / "status.json").read_text())["state"] == "preempted"


def test_mixed_precision_xla_and_multi_step_calls_train_on_cpu(tiny_data, tmp_path):
    run_dir = tmp_path / "fast"
    run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(
            tiny_data,
            run_dir,
            "precision=mixed_float16",
            "xla=true",
            "steps_per_execution=3",
            "output.checkpoint_every_steps=6",
        ),
    )
    report = json.loads((run_dir / "eval" / "test.json").read_text())
    assert report["metrics"]["accuracy"] > 0.8
    from distxfer.checkpoint import CheckpointStore

    latest = CheckpointStore(
        run_dir / "checkpoints", keep=3, best_metric="val_accuracy", writer=False
    ).latest()
    floats = [a for a in latest.model if a.dtype.kind == "f"]
    assert floats and all(
        a.dtype == np.float32 for a in floats
    )  # variables stay float32 under mixed precision
    assert latest.state.global_step == 36
    import zipfile

    with zipfile.ZipFile(run_dir / "model.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    policies = {layer["name"]: json.dumps(layer["config"].get("dtype")) for layer in layers}
    assert "mixed_float16" in policies["head_hidden"]  # the model really computed in float16
    assert "float32" in policies["logits"] and "mixed" not in policies["logits"]


def test_bfloat16_training_runs(tiny_data, tmp_path):
    run_dir = tmp_path / "bf16"
    run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(tiny_data, run_dir, "precision=mixed_bfloat16", "phases.0.epochs=1"),
    )
    assert json.loads((run_dir / "eval" / "test.json").read_text())["samples"] == 21


def test_training_reads_tfrecords_written_by_data_convert(tiny_data, tmp_path):
    records = tmp_path / "records"
    out = run_cli(
        "data",
        "convert",
        str(tiny_data["train"]),
        str(records),
        "--shards",
        "4",
        "--val-split",
        "0.2",
    )
    assert f"train with data.train_dir={records}" in out.stdout
    inspected = run_cli("data", "inspect", str(records)).stdout
    assert "tfrecords" in inspected
    run_dir = tmp_path / "from_records"
    run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(tiny_data, run_dir, f"data.train_dir={records}", "data.val_dir=null"),
    )
    report = json.loads((run_dir / "eval" / "test.json").read_text())
    assert report["samples"] == 21 and report["metrics"]["accuracy"] > 0.8


def test_resuming_with_another_global_batch_restarts_the_interrupted_epoch(tiny_data, tmp_path):
    run_dir = tmp_path / "rebatched"
    first = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(
            tiny_data,
            run_dir,
            "data.batch_size=1",
            "max_train_seconds=0.001",
            "output.stop_check_steps=5",
        ),
    )
    assert "Stopped on the time limit" in first.stdout
    resumed = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        "--allow-config-change",
        *tiny_overrides(tiny_data, run_dir, "data.batch_size=2"),
    )
    assert (
        "the global batch changed (1 -> 2 images per step), so a step no longer covers the same"
        " images: epoch 1 restarts from its first step" in resumed.stderr
    )
    assert "resuming at step" not in resumed.stdout


@pytest.mark.distributed
def test_resuming_on_fewer_workers_at_the_same_global_batch_continues_at_the_same_step(
    tiny_data, tmp_path
):
    run_dir = tmp_path / "shrunk"
    common = ["phases.0.epochs=1", "engine.threads=1"]
    stopped = subprocess.run(
        [sys.executable, "-m", "distxfer.launchers", "tf-config", "-n", "2"]
        + ["-c", "configs/mnist_mlp.yaml"]
        + tiny_overrides(tiny_data, run_dir, *common, "max_train_seconds=0.001")
        + ["output.stop_check_steps=4"],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert stopped.returncode == 0, stopped.stdout[-4000:]
    one_process = ["engine.name=mirrored", "engine.cpu_replicas=2"]  # 1 x 2 replicas x 4 images
    resumed = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(tiny_data, run_dir, *common, *one_process),
    )
    assert (
        "the workers changed (2 -> 1 worker processes) at the same global batch of 8 images, so"
        " every step covers the same images: it resumes at the same step" in resumed.stderr
    )
    assert "resuming at step 4" in resumed.stdout
