"""Engine choice from the launcher's environment, and TF_CONFIG built from Slurm's variables."""

from __future__ import annotations

import json

import pytest

from distxfer.engines import detect
from distxfer.engines.detect import choose_engine, detect_launch, tf_config_position
from distxfer.engines.slurm import expand_hostlist, tasks_per_node, workers_from_slurm
from distxfer.engines.tfconfig import ensure_tf_config
from distxfer.errors import EngineError


def test_horovodrun_variables_mean_horovod():
    launch = detect_launch(
        {
            "HOROVOD_RANK": "1",
            "HOROVOD_SIZE": "2",
            "HOROVOD_LOCAL_RANK": "1",
            "HOROVOD_LOCAL_SIZE": "2",
        }
    )
    assert (launch.launcher, launch.rank, launch.size, launch.local_rank) == ("horovodrun", 1, 2, 1)
    assert choose_engine("auto", launch, gpu_count=0, cpu_replicas=0)[0] == "horovod"


def test_mpirun_variables_mean_horovod_when_installed(monkeypatch):
    launch = detect_launch(
        {
            "OMPI_COMM_WORLD_RANK": "0",
            "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_LOCAL_RANK": "0",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        }
    )
    assert (launch.launcher, launch.size, launch.local_size) == ("mpirun", 4, 2)
    monkeypatch.setattr(detect, "horovod_available", lambda: True)
    assert choose_engine("auto", launch, 0, 0)[0] == "horovod"
    monkeypatch.setattr(detect, "horovod_available", lambda: False)
    name, reason = choose_engine("auto", launch, 0, 0)
    assert name == "multiworker" and "horovod is not installed" in reason


def test_srun_step_is_detected_with_its_tasks_per_node():
    env = {
        "SLURM_PROCID": "3",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    }
    launch = detect_launch(env)
    assert (launch.launcher, launch.rank, launch.size, launch.local_rank, launch.local_size) == (
        "srun",
        3,
        4,
        1,
        2,
    )


def test_tf_config_means_multiworker_and_gives_the_rank():
    config = json.dumps(
        {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 2}}
    )
    launch = detect_launch({"TF_CONFIG": config})
    assert (launch.launcher, launch.rank, launch.size) == ("tf_config", 2, 3)
    assert choose_engine("auto", launch, 0, 0)[0] == "multiworker"


def test_a_chief_entry_counts_as_rank_zero():
    config = json.dumps(
        {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    )
    assert tf_config_position(config) == (1, 2)


def test_broken_tf_config_is_a_clear_error():
    with pytest.raises(EngineError, match="TF_CONFIG is not valid"):
        detect_launch({"TF_CONFIG": "{not json"})


def test_local_gpus_choose_mirrored_and_nothing_chooses_single():
    none = detect_launch({})
    assert choose_engine("auto", none, gpu_count=4, cpu_replicas=0)[0] == "mirrored"
    assert choose_engine("auto", none, gpu_count=0, cpu_replicas=2)[0] == "mirrored"
    assert choose_engine("auto", none, gpu_count=1, cpu_replicas=0) == (
        "single",
        "one process on one GPU",
    )
    assert choose_engine("horovod", none, 0, 0) == ("horovod", "set by engine.name")


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("node1", ["node1"]),
        ("gpu[01-03,07],login", ["gpu01", "gpu02", "gpu03", "gpu07", "login"]),
        ("a[8-10]", ["a8", "a9", "a10"]),
    ],
)
def test_slurm_hostlists_expand(text, hosts):
    assert expand_hostlist(text) == hosts


def test_slurm_task_counts_expand():
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    with pytest.raises(EngineError, match="cannot read"):
        tasks_per_node("two")


def test_workers_from_slurm_give_one_port_per_local_task():
    env = {
        "SLURM_STEP_NODELIST": "n[1-2]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
        "SLURM_JOB_ID": "5",
    }
    assert workers_from_slurm(env) == ["n1:20005", "n1:20006", "n2:20005", "n2:20006"]


def test_cyclic_task_distribution_is_refused():
    with pytest.raises(EngineError, match="--distribution=block"):
        workers_from_slurm({"SLURM_DISTRIBUTION": "cyclic", "SLURM_STEP_NODELIST": "n1"})


def test_tf_config_is_written_for_an_srun_step():
    env = {"SLURM_STEP_NODELIST": "n1", "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_JOB_ID": "0"}
    launch = detect.Launch("srun", rank=1, local_rank=1, size=2, local_size=2)
    how = ensure_tf_config(launch, env)
    assert "Slurm" in how
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": ["n1:20000", "n1:20001"]},
        "task": {"type": "worker", "index": 1},
    }


def test_existing_tf_config_is_left_alone():
    env = {"TF_CONFIG": '{"x": 1}'}
    assert ensure_tf_config(detect.Launch("srun", size=2), env) == "TF_CONFIG from the environment"
    assert env["TF_CONFIG"] == '{"x": 1}'


def test_horovod_engine_refuses_a_world_smaller_than_the_launch(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("horovod.tensorflow")
    fake.init = lambda: None
    fake.size = fake.local_size = lambda: 1
    fake.rank = fake.local_rank = lambda: 0
    fake.Compression = types.SimpleNamespace(fp16="fp16", none="none")
    monkeypatch.setitem(sys.modules, "horovod", types.ModuleType("horovod"))
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake)
    monkeypatch.delitem(sys.modules, "distxfer.engines.horovod", raising=False)
    from distxfer.engines.horovod import HorovodEngine

    with pytest.raises(
        EngineError, match="Horovod sees 1 process\\(es\\) but the launcher started 2"
    ):
        HorovodEngine(detect.Launch("srun", size=2), fp16_allreduce=False, reason="test")
    engine = HorovodEngine(detect.Launch("none"), fp16_allreduce=False, reason="test")
    assert (engine.rank, engine.size) == (0, 1)
    monkeypatch.delitem(sys.modules, "distxfer.engines.horovod")  # not the fake's, for later tests


def test_the_engine_answers_where_it_runs_from_its_launch():
    from distxfer.engines.base import Engine

    engine = Engine(detect.Launch("srun", rank=3, local_rank=1, size=4, local_size=2))
    assert (engine.rank, engine.local_rank, engine.size, engine.is_chief) == (3, 1, 4, False)
    assert engine.num_replicas == 4 and Engine(detect.Launch("none")).is_chief


def test_the_current_launch_is_detected_once(monkeypatch):
    detect.current_launch.cache_clear()
    monkeypatch.setenv("HOROVOD_RANK", "1")
    monkeypatch.setenv("HOROVOD_SIZE", "2")
    first = detect.current_launch()
    monkeypatch.setenv("HOROVOD_RANK", "0")
    assert detect.current_launch() is first and first.rank == 1
    detect.current_launch.cache_clear()


@pytest.mark.slow  # imports TensorFlow and Horovod
def test_horovod_built_without_mpi_under_mpirun_says_how_to_fix_it_before_starting(monkeypatch):
    import horovod.tensorflow as hvd

    from distxfer.config import EngineConfig
    from distxfer.engines import _horovod

    monkeypatch.setattr(hvd, "mpi_built", lambda: False)  # as a gloo-only build answers
    launch = detect.Launch("mpirun", rank=0, local_rank=0, size=2, local_size=2)
    with pytest.raises(EngineError) as error:
        _horovod(EngineConfig(name="horovod"), launch, "set by engine.name")
    assert "mpirun started this process, but this Horovod was built without MPI" in str(error.value)
    assert "launch/horovodrun.sh --gloo" in str(error.value)
