"""Sweeps and `distxfer slurm`: the grid of runs, and the batch scripts written for a run or a
sweep, checked before anything is written. (Submitting them: test_slurm_jobs.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import tiny_overrides

from distxfer.cli import main
from distxfer.config import load_config
from distxfer.errors import ConfigError
from distxfer.run import check_run_dir
from distxfer.sweeps import Sweep, grid, parse_axis, plan_sweep

CONFIG = "configs/mnist_mlp.yaml"


def test_an_axis_is_a_key_and_values_split_on_commas_outside_brackets():
    assert parse_axis("phases.head.learning_rate=1e-3,3e-4") == (
        "phases.head.learning_rate",
        ["1e-3", "3e-4"],
    )
    assert parse_axis("data.image_size=[224, 224],[160,160]")[1] == ["[224, 224]", "[160,160]"]


@pytest.mark.parametrize("text", ["learning_rate", "=1,2", "data.batch_size=4,,8"])
def test_a_malformed_axis_is_refused_with_an_example(text):
    with pytest.raises(ConfigError, match="is not KEY=VALUE1,VALUE2,...; e.g. --sweep"):
        parse_axis(text)


def test_the_grid_has_every_combination_named_by_its_values():
    trials = grid([parse_axis("phases.head.learning_rate=1e-3,3e-4"), parse_axis("seed=1,2")])
    assert [t.name for t in trials] == [
        "000_learning_rate=1e-3_seed=1",
        "001_learning_rate=1e-3_seed=2",
        "002_learning_rate=3e-4_seed=1",
        "003_learning_rate=3e-4_seed=2",
    ]
    assert trials[1].overrides == ("phases.head.learning_rate=1e-3", "seed=2")


def test_keys_that_end_alike_are_named_in_full():
    trials = grid([parse_axis("phases.0.epochs=1"), parse_axis("phases.1.epochs=2")])
    assert trials[0].name == "000_phases.0.epochs=1_phases.1.epochs=2"


def test_a_sweep_list_round_trips(tmp_path):
    sweep = Sweep(tmp_path / "s", CONFIG, ["seed=3"], grid([parse_axis("seed=1,2")]), ["17"])
    sweep.write()
    again = Sweep.read(tmp_path / "s")
    assert again == sweep and again.train_overrides(again.trials[0]) == [
        "seed=3",
        "seed=1",
        f"output.run_dir={tmp_path / 's' / '000_seed=1'}",
    ]


def test_distxfer_slurm_writes_a_ready_script_into_the_run_directory(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    flags = ["--engine", "multiworker", "--nodes", "2", "--gpus-per-node", "4"]
    flags += ["--time", "4:00:00", "--partition", "gpu", "--max-requeues", "3"]
    assert main(["slurm", "-c", CONFIG, *tiny_overrides(tiny_data, run_dir), *flags]) == 0
    script = run_dir / "slurm" / "job.sbatch"
    text = script.read_text()
    assert text in capsys.readouterr().out
    for line in (
        "#SBATCH --nodes=2 ",
        "#SBATCH --ntasks-per-node=4 ",
        "#SBATCH --gpus-per-node=4 ",
        "#SBATCH --time=4:00:00 ",
        "#SBATCH --partition=gpu ",
        f"#SBATCH --output={run_dir}/slurm/%j.out ",
        "ENGINE=multiworker",
        "MAX_REQUEUES=${DISTXFER_MAX_REQUEUES:-3}",
    ):
        assert f"\n{line}" in text, line
    assert f"output.run_dir={run_dir}" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    config = load_config(CONFIG, tiny_overrides(tiny_data, run_dir))
    assert check_run_dir(run_dir, config, allow_config_change=False) is False  # still a new run


def test_a_sweep_is_one_array_job_with_a_run_directory_per_combination(tiny_data, tmp_path):
    folder = tmp_path / "sweep"
    axes = ["--sweep", "phases.only.learning_rate=0.01,0.003", "--sweep", "data.batch_size=4,8"]
    assert main(["slurm", "-c", CONFIG, *tiny_overrides(tiny_data, folder), *axes]) == 0
    listed = json.loads((folder / "sweep.json").read_text())
    names = [t["name"] for t in listed["trials"]]
    assert names[0] == "000_learning_rate=0.01_batch_size=4" and len(names) == 4
    text = (folder / "slurm" / "sweep.sbatch").read_text()
    assert "\n#SBATCH --array=0-3 " in text
    assert f"\n#SBATCH --output={folder}/slurm/%A_%a.out " in text
    assert "    3) RUN_ARGS=(" in text and f"output.run_dir={folder}/{names[3]})" in text


def test_a_bad_value_in_a_sweep_stops_it_before_anything_is_written(tiny_data, tmp_path, capsys):
    folder = tmp_path / "sweep"
    args = ["slurm", "-c", CONFIG, *tiny_overrides(tiny_data, folder), "--sweep", "seed=1,x"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "distxfer: error: sweep run 001_seed=x: seed: expected an integer, got str 'x'\n"
    )
    assert not folder.exists()


def plan_seed_sweep(folder: Path) -> Sweep:
    config = load_config(CONFIG, [f"output.run_dir={folder}"])
    return plan_sweep(
        Path(CONFIG), [f"output.run_dir={folder}"], config, grid([parse_axis("seed=1,2")])
    )


def test_a_manifest_the_chief_is_still_writing_does_not_make_the_folder_foreign(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / ".sweep.json.tmp-123-abcd").write_text("{")  # the chief's write, not renamed yet
    assert plan_seed_sweep(folder).folder == folder.resolve()


def test_a_manifest_landing_while_a_worker_plans_the_sweep_is_taken_as_the_sweep(
    tmp_path, monkeypatch
):
    folder = tmp_path / "sweep"
    chiefs = Sweep(
        folder.resolve(), CONFIG, [f"output.run_dir={folder}"], grid([parse_axis("seed=1,2")])
    )
    looked = Sweep.read

    def read_then_chief_writes(cls, where):  # the chief's rename lands right after this look
        found = looked(where)
        chiefs.write()
        return found

    monkeypatch.setattr(Sweep, "read", classmethod(read_then_chief_writes))
    assert plan_seed_sweep(folder).trials == chiefs.trials


def test_another_sweep_into_the_same_folder_is_refused(tiny_data, tmp_path, capsys):
    base = ["slurm", "-c", CONFIG, *tiny_overrides(tiny_data, tmp_path / "sweep")]
    assert main([*base, "--sweep", "seed=1,2"]) == 0
    assert main([*base, "--sweep", "seed=1,2"]) == 0  # the same sweep again: resubmitting it
    assert main([*base, "--sweep", "seed=3,4"]) == 2
    assert "holds another sweep (see its sweep.json)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            ["--time", "2h"],
            "--time '2h' is not a Slurm time limit; use e.g. 30, 4:00:00 or 2-00:00:00",
        ),
        (["--nodes", "0"], "--nodes must be at least 1"),
    ],
)
def test_bad_slurm_flags_are_one_line(flag, message, tmp_path, capsys):
    assert main(["slurm", "-c", CONFIG, f"output.run_dir={tmp_path / 'r'}", *flag]) == 2
    assert capsys.readouterr().err == f"distxfer: error: {message}\n"
    assert not (tmp_path / "r").exists()


def test_plain_files_in_a_run_directory_are_still_refused(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "slurm").mkdir(parents=True)
    config = load_config(CONFIG, [f"output.run_dir={run_dir}"])
    assert check_run_dir(Path(run_dir), config, allow_config_change=False) is False
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a distxfer run"):
        check_run_dir(run_dir, config, allow_config_change=False)
