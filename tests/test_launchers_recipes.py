"""distxfer.launchers without TensorFlow: each recipe's processes, the supervisor, the CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from distxfer import launchers
from distxfer.launchers import ProcessSpec, supervise
from distxfer.launchers import cli as launch_cli

PROGRAM = ["prog", "--flag", "a b"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (or a container's init) to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(path: Path, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A directory standing for this Python's environment: sys.executable lives there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    return bin_dir


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# -- recipes --------------------------------------------------------------------------------------


def test_horovodrun_runs_n_processes_on_localhost_by_default():
    (process,) = launchers.horovodrun(PROGRAM, n=3)
    assert process.argv[1:] == ["-np", "3", "-H", "localhost:3", *PROGRAM]
    assert process.env == {}


def test_horovodrun_passes_hosts_and_the_controller():
    (process,) = launchers.horovodrun(PROGRAM, n=8, hosts="node1:4,node2:4", controller="gloo")
    assert process.argv[1:] == ["--gloo", "-np", "8", "-H", "node1:4,node2:4", *PROGRAM]
    (mpi,) = launchers.horovodrun(PROGRAM, n=2, controller="mpi")
    assert mpi.argv[1] == "--mpi"


def test_horovodrun_rejects_an_unknown_controller():
    with pytest.raises(ValueError, match="gloo or mpi"):
        launchers.horovodrun(PROGRAM, n=2, controller="nccl")


def test_horovodrun_is_the_one_next_to_python_first(fake_bin):
    runner = executable(fake_bin / "horovodrun", "#!/bin/sh\n")
    assert launchers.horovodrun(PROGRAM, n=2)[0].argv[0] == str(runner)


def test_horovodrun_is_found_on_path_when_not_next_to_python(fake_bin, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runner = executable(elsewhere / "horovodrun", "#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(elsewhere))
    assert launchers.horovodrun(PROGRAM, n=2)[0].argv[0] == str(runner)


def test_mpirun_binds_nothing_maps_by_slot_and_tags_output_by_rank(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (process,) = launchers.mpirun(PROGRAM, n=4, env={})
    assert process.argv == [
        "mpirun",
        "-np",
        "4",
        "--bind-to",
        "none",
        "--map-by",
        "slot",
        "--tag-output",
        *PROGRAM,
    ]
    assert process.env == {}


def test_mpirun_exports_the_variables_that_are_set():
    env = {"PATH": "/bin", "PYTHONPATH": "/x", "OMP_NUM_THREADS": "1", "UNRELATED": "1"}
    argv = launchers.mpirun(PROGRAM, n=2, env=env)[0].argv
    exported = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-x"]
    assert exported == ["PATH", "PYTHONPATH", "OMP_NUM_THREADS"]


def test_mpirun_exports_from_this_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    argv = launchers.mpirun(PROGRAM, n=2)[0].argv
    assert "TF_CPP_MIN_LOG_LEVEL" in argv and "LD_LIBRARY_PATH" not in argv


def test_mpirun_allows_running_as_root_only_for_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "--allow-run-as-root" in launchers.mpirun(PROGRAM, n=2, env={})[0].argv
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "--allow-run-as-root" not in launchers.mpirun(PROGRAM, n=2, env={})[0].argv


def test_mpirun_passes_hosts_and_oversubscribe_before_the_program(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    argv = launchers.mpirun(PROGRAM, n=8, hosts="a:4,b:4", oversubscribe=True, env={})[0].argv
    assert argv[-6:] == ["--oversubscribe", "-H", "a:4,b:4", *PROGRAM]


def test_tf_config_workers_share_one_loopback_cluster_each_with_its_index():
    processes = launchers.tf_config_workers(PROGRAM, n=3)
    configs = [json.loads(p.env["TF_CONFIG"]) for p in processes]
    assert [p.argv for p in processes] == [PROGRAM] * 3
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    cluster = configs[0]["cluster"]
    assert all(c["cluster"] == cluster for c in configs) and list(cluster) == ["worker"]
    hosts, ports = zip(*(address.split(":") for address in cluster["worker"]))
    assert set(hosts) == {"127.0.0.1"} and len(set(ports)) == 3


def test_free_ports_are_distinct_and_bindable():
    ports = launchers.free_ports(4)
    assert len(set(ports)) == 4
    import socket

    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_mirrored_is_one_process_running_the_program_as_given():
    assert launchers.mirrored(PROGRAM) == [ProcessSpec(PROGRAM)]


def test_train_program_puts_the_engine_first_and_cpu_replicas_only_without_gpu(monkeypatch):
    monkeypatch.setattr(launchers, "gpu_count", lambda: 0)
    program = launchers.train_program("mirrored", ["-c", "x.yaml"], distxfer="dx", cpu_replicas=3)
    assert program == [
        "dx",
        "train",
        "engine.name=mirrored",
        "engine.cpu_replicas=3",
        "-c",
        "x.yaml",
    ]
    monkeypatch.setattr(launchers, "gpu_count", lambda: 2)
    program = launchers.train_program("mirrored", ["-c", "x.yaml"], distxfer="dx", cpu_replicas=3)
    assert program == ["dx", "train", "engine.name=mirrored", "-c", "x.yaml"]


def test_train_program_runs_the_distxfer_next_to_python(fake_bin):
    command = executable(fake_bin / "distxfer", "#!/bin/sh\n")
    assert launchers.train_program("horovod", [])[:2] == [str(command), "train"]


def test_gpu_count_reads_nvidia_smi(tmp_path, monkeypatch):
    listing = "GPU 0: A100 (UUID: GPU-1)\\nGPU 1: A100 (UUID: GPU-2)\\n"
    executable(tmp_path / "nvidia-smi", f'#!/bin/sh\nprintf "{listing}"\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launchers.gpu_count() == 2
    assert launchers.default_np() == 2


def test_no_nvidia_smi_means_no_gpu_and_two_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launchers.gpu_count() == 0
    assert launchers.default_np() == 2


def test_default_np_is_one_process_per_gpu(monkeypatch):
    monkeypatch.setattr(launchers, "gpu_count", lambda: 4)
    assert launchers.default_np() == 4


def test_command_line_is_shell_quoted_with_the_environment_first():
    process = ProcessSpec(["prog", "a b", "x=[1, 2]"], {"TF_CONFIG": '{"a": 1}'})
    assert process.command_line() == "TF_CONFIG='{\"a\": 1}' prog 'a b' 'x=[1, 2]'"


# -- the supervisor -------------------------------------------------------------------------------


def test_several_processes_have_each_output_line_prefixed_by_worker():
    out = io.StringIO()
    code = "import sys; print('one'); print('two', file=sys.stderr, flush=True); print('x', end='')"
    status = supervise([ProcessSpec(python(code)), ProcessSpec(python(code))], output=out)
    assert status == 0
    lines = out.getvalue().splitlines()
    for worker in (0, 1):
        mine = [line for line in lines if line.startswith(f"[worker {worker}] ")]
        assert sorted(mine) == sorted(f"[worker {worker}] {text}" for text in ("one", "two", "x"))
    assert len(lines) == 6


def test_one_process_output_is_not_prefixed():
    out = io.StringIO()
    assert supervise([ProcessSpec(python("print('hello')"))], output=out) == 0
    assert out.getvalue() == "hello\n"


def test_one_process_writes_straight_to_stdout_and_stderr(capfd):
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    assert supervise([ProcessSpec(python(code))]) == 0
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("out\n", "err\n")


def test_each_process_gets_the_base_environment_plus_its_own():
    out = io.StringIO()
    code = "import os; print(os.environ['BASE'], os.environ.get('OWN'))"
    processes = [ProcessSpec(python(code), {"OWN": "mine"}), ProcessSpec(python(code))]
    assert supervise(processes, env={**os.environ, "BASE": "base"}, output=out) == 0
    assert sorted(out.getvalue().splitlines()) == ["[worker 0] base mine", "[worker 1] base None"]


def test_a_failing_process_gives_its_status_and_is_reported(capfd):
    processes = [ProcessSpec(python("import sys; sys.exit(0)")), ProcessSpec(python("exit(3)"))]
    assert supervise(processes, output=io.StringIO()) == 3
    assert "[launch] worker 1 exited with status 3; stopping the others" in capfd.readouterr().err


def test_a_process_killed_by_a_signal_gives_128_plus_the_signal():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert supervise([ProcessSpec(python(code))], output=io.StringIO()) == 128 + signal.SIGKILL


def test_when_one_fails_the_others_are_stopped_and_none_survives(tmp_path):
    """The sleeper, the child it started in its group, and one it started in a new session."""
    pids = tmp_path / "pids"
    sleeper = f"""
        import subprocess, sys, time
        group = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        session = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
        )
        import os
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{group.pid}} {{session.pid}}\\n")
        time.sleep(600)
    """
    failing = f"""
        import os, sys, time
        while not os.path.exists({str(pids)!r}):
            time.sleep(0.05)
        sys.exit(1)
    """
    started = time.monotonic()
    status = supervise(
        [ProcessSpec(python(failing)), ProcessSpec(python(sleeper))],
        output=io.StringIO(),
        grace=2,
    )
    assert status == 1 and time.monotonic() - started < 15
    left = [int(pid) for pid in wait_for(pids).split()]
    assert not [pid for pid in left if alive(pid)]


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    stubborn = f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(ready)!r}, "w").write(f"{{os.getpid()}}\\n")
        time.sleep(600)
    """
    failing = f"""
        import os, sys, time
        while not os.path.exists({str(ready)!r}):
            time.sleep(0.05)
        sys.exit(2)
    """
    started = time.monotonic()
    processes = [ProcessSpec(python(stubborn)), ProcessSpec(python(failing))]
    assert supervise(processes, output=io.StringIO(), grace=1) == 2
    assert 1 <= time.monotonic() - started < 15
    assert not alive(int(wait_for(ready)))


def test_a_timeout_stops_everything_and_raises(tmp_path):
    ready = tmp_path / "ready"
    code = (
        f"import os, time; open({str(ready)!r}, 'w').write(f'{{os.getpid()}}\\n'); time.sleep(600)"
    )
    with pytest.raises(TimeoutError):
        supervise([ProcessSpec(python(code))], output=io.StringIO(), timeout=1, grace=1)
    assert not alive(int(wait_for(ready)))


SUPERVISOR = """
import sys
from distxfer.launchers import ProcessSpec, supervise
worker = '''
import os, signal, sys, time
def stop(signum, frame):
    print("stopping on", signal.Signals(signum).name, flush=True)
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
print("ready", flush=True)
time.sleep(600)
'''
sys.exit(supervise([ProcessSpec([sys.executable, "-c", worker])] * 2))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_to_the_supervisor_reaches_every_worker_and_their_status_is_its(signum):
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [supervisor.stdout.readline() for _ in range(2)]
        assert sorted(lines) == ["[worker 0] ready\n", "[worker 1] ready\n"]
        supervisor.send_signal(signum)
        out, _ = supervisor.communicate(timeout=30)
    finally:
        supervisor.kill()
    assert supervisor.returncode == 75
    name = signal.Signals(signum).name
    assert sorted(out.splitlines()) == [f"[worker {i}] stopping on {name}" for i in (0, 1)]


# -- the command line -----------------------------------------------------------------------------


def test_cli_runs_distxfer_train_with_the_engine_before_the_train_arguments(
    tmp_path, monkeypatch, capfd
):
    fake = executable(tmp_path / "distxfer", '#!/bin/sh\necho "args: $*"\n')
    monkeypatch.setattr(launchers, "gpu_count", lambda: 0)
    argv = ["mirrored", "--distxfer", str(fake), "--cpu-replicas", "3", "-c", "cfg.yaml", "a=1"]
    assert launch_cli.main(argv) == 0
    out = capfd.readouterr().out.splitlines()
    assert out == [
        f"[launch] {fake} train engine.name=mirrored engine.cpu_replicas=3 -c cfg.yaml a=1",
        "args: train engine.name=mirrored engine.cpu_replicas=3 -c cfg.yaml a=1",
    ]


def test_cli_options_stop_at_the_first_train_argument():
    options, rest, whole = launch_cli._split("mpirun", ["--multiworker", "-np", "2", "-c", "-np"])
    assert (options, rest, whole) == (["--multiworker", "-np", "2"], ["-c", "-np"], False)
    options, rest, whole = launch_cli._split("mpirun", ["-n", "2", "--", "prog", "-n"])
    assert (options, rest, whole) == (["-n", "2"], ["prog", "-n"], True)


def test_cli_mpirun_multiworker_sets_the_engine(monkeypatch, capfd):
    started = []
    monkeypatch.setattr(launch_cli, "supervise", lambda processes: started.extend(processes) or 0)
    assert (
        launch_cli.main(["mpirun", "--multiworker", "-np", "3", "--distxfer", "dx", "-c", "y"]) == 0
    )
    (process,) = started
    assert process.argv[:3] == ["mpirun", "-np", "3"]
    assert process.argv[-5:] == ["dx", "train", "engine.name=multiworker", "-c", "y"]
    assert capfd.readouterr().out == f"[launch] {process.command_line()}\n"


def test_cli_tf_config_starts_two_workers_by_default_and_prints_each(monkeypatch, capfd):
    started = []
    monkeypatch.setattr(launch_cli, "supervise", lambda processes: started.extend(processes) or 0)
    assert launch_cli.main(["tf-config", "--", "prog", "x"]) == 0
    assert [p.argv for p in started] == [["prog", "x"]] * 2
    printed = capfd.readouterr().out.splitlines()
    assert printed == [f"[launch] {p.command_line()}" for p in started]
    assert printed[1].startswith('[launch] TF_CONFIG=\'{"cluster"')


@pytest.mark.parametrize(
    "script", ["horovodrun.sh", "mpirun.sh", "multiworker_local.sh", "mirrored.sh"]
)
def test_script_help_is_its_header_and_no_train_arguments_is_an_error(script, tmp_path):
    path = REPO / "launch" / script
    shown = subprocess.run([path, "-h"], cwd=tmp_path, capture_output=True, text=True)
    header = path.read_text().split("\nset -euo pipefail")[0].split("\n", 1)[1]
    assert shown.returncode == 0 and shown.stdout == header + "\n"
    missing = subprocess.run([path], cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr == f"{script}: pass -c CONFIG [overrides] for distxfer train\n"


def test_script_runs_the_program_of_its_environment(tmp_path):
    """DISTXFER_VENV chooses the environment; its distxfer is what runs, from any directory."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    executable(venv / "bin" / "distxfer", '#!/bin/sh\necho "ran: $*"\n')
    env = {**os.environ, "DISTXFER_VENV": str(venv), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [REPO / "launch" / "multiworker_local.sh", "-n", "2", "-c", "cfg"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 2)[2] for line in lines[:2]] == [
        f"{venv}/bin/distxfer train engine.name=multiworker -c cfg"
    ] * 2
    assert sorted(lines[2:]) == [
        f"[worker {i}] ran: train engine.name=multiworker -c cfg" for i in (0, 1)
    ]
