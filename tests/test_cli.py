"""The command line: bad input is one clear line and exit status 2, before any expensive work."""

from __future__ import annotations

import pytest
from conftest import REPO, cli_env, run_cli, tiny_overrides

from distxfer.cli import build_parser, main


def test_every_command_is_reachable():
    parser = build_parser()
    for command in (
        "train -c x.yaml",
        "evaluate run",
        "predict run img.png",
        "export run",
        "data inspect d",
        "data convert a b",
        "data demo",
        "weights ResNet50",
        "doctor",
        "demo",
        "bench input",
        "slurm -c x.yaml",
        "runs folder",
    ):
        assert parser.parse_args(command.split()).func


def test_overrides_may_come_before_and_after_the_config_option(capsys, tmp_path):
    code = main(
        ["train", "engine.name=horovd", "-c", "configs/mnist_mlp.yaml", "data.batch_size=4"]
    )
    assert code == 2
    assert "engine.name: 'horovd' is not one of" in capsys.readouterr().err


def test_later_overrides_win(tmp_path, capsys):
    code = main(
        ["train", "data.batch_size=abc", "-c", "configs/mnist_mlp.yaml", "data.batch_size=0"]
    )
    assert code == 2
    assert "data.batch_size: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.batch_sise=4"], "data.batch_sise: unknown key (did you mean 'batch_size'?)"),
        (["data.train_dir=/nonexistent/images"], "/nonexistent/images does not exist"),
        (["model.backbone=ResNet5O"], "model.backbone"),
    ],
)
def test_bad_input_is_one_line_with_status_2(args, message, capsys):
    code = main(["train", "-c", "configs/mnist_mlp.yaml", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.startswith("distxfer: error: ") and err.count("\n") == 1


def test_check_says_what_train_would_do_and_writes_nothing(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        ["train", "--check", "-c", "configs/mnist_mlp.yaml", *tiny_overrides(tiny_data, run_dir)]
    )
    assert code == 0
    assert capsys.readouterr().out == f"config ok: would start a new run in {run_dir}\n"
    assert not run_dir.exists()


def test_check_refuses_a_data_folder_that_is_a_file(tiny_data, tmp_path, capsys):
    image = next((tiny_data["test"] / "red").iterdir())
    args = [*tiny_overrides(tiny_data, tmp_path / "run"), f"data.test_dir={image}"]
    code = main(["train", "--check", "-c", "configs/mnist_mlp.yaml", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"distxfer: error: data.test_dir: {image} is not a folder; point it at a folder of"
        " class folders or of TFRecord files\n"
    )


def test_a_bad_image_stops_the_run_before_training_and_names_the_file(tiny_data, tmp_path):
    data = {k: tmp_path / k for k in tiny_data}
    for name, src in tiny_data.items():
        for path in src.rglob("*.png"):
            target = data[name] / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    broken = data["train"] / "red" / "broken.png"
    broken.write_bytes((data["train"] / "red" / "red_000.png").read_bytes()[:60])
    result = run_cli(
        "train",
        "-c",
        "configs/mnist_mlp.yaml",
        *tiny_overrides(data, tmp_path / "run"),
        check=False,
    )
    assert result.returncode == 2
    assert str(broken) in result.stderr and "data.bad_files=skip" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written, no engine started
    assert "engine" not in result.stderr


def test_a_foreign_run_directory_is_left_untouched(tiny_data, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = run_cli(
        "train", "-c", "configs/mnist_mlp.yaml", *tiny_overrides(tiny_data, foreign), check=False
    )
    assert result.returncode == 2 and "is not a distxfer run" in result.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_doctor_probes_every_engine_for_real_and_all_run_here():
    result = run_cli("doctor")
    lines = result.stdout.splitlines()
    for name in ("tensorflow", "keras", "horovod", "mpi"):
        assert any(line.startswith(f"ok   {name} ") for line in lines), result.stdout
    assert "gloo=yes" in result.stdout and "mpi=yes" in result.stdout
    probed = {
        "engine single": "single: 1 process(es) x 1 replica(s)",
        "engine mirrored": "mirrored: 1 process(es) x 2 replica(s)",  # 2 logical CPU devices
        "engine multiworker": "multiworker: 2 process(es)",
        "engine horovod (horovodrun, gloo)": "horovod: 2 process(es)",
        "engine horovod (mpirun)": "horovod: 2 process(es)",
    }
    for name, answer in probed.items():
        (line,) = [x for x in lines if f" {name} " in x]
        assert line.startswith("ok   ") and answer in line, result.stdout
    assert result.returncode == 0  # Slurm is not configured here: a warning, not asked about


@pytest.mark.slow
def test_doctor_fails_and_says_how_to_fix_what_it_was_asked_about_and_cannot_work(tmp_path):
    fake = tmp_path / "fake" / "horovod"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('built without TensorFlow support')\n")
    env = cli_env(PYTHONPATH=f"{fake.parent}:{REPO}", SLURM_CONF=str(tmp_path / "none.conf"))
    result = run_cli("doctor", "horovod", "slurm", env=env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    (horovod,) = [x for x in lines if " engine horovod " in x]
    assert horovod.startswith("FAIL ") and "built without TensorFlow support" in horovod
    assert "run launch/setup.sh" in horovod
    (slurm,) = [x for x in lines if x.split()[1:2] == ["slurm"]]
    assert slurm.startswith("FAIL ") and "no Slurm controller answers" in slurm
    assert "set SLURM_CONF" in slurm
    assert not [x for x in lines if " engine single " in x]  # only what was asked is probed
    warned = run_cli("doctor", "single", env=env, check=False)
    assert warned.returncode == 0, warned.stdout
    assert [x for x in warned.stdout.splitlines() if x.startswith("warn slurm ")]
