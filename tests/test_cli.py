"""The command line: bad input is one clear line and exit status 2, before any expensive work."""

from __future__ import annotations

import pytest
from conftest import run_cli, tiny_overrides

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
        "bench",
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
def test_doctor_reports_versions_horovod_build_and_engines():
    out = run_cli("doctor").stdout
    for expected in (
        "tensorflow",
        "keras",
        "horovod",
        "gloo=yes",
        "mpi=yes",
        "engine single",
        "engine mirrored",
        "engine multiworker",
        "engine horovod",
    ):
        assert expected in out, out
    assert "NO  engine horovod" not in out
