"""The supervisor: start processes, prefix their output, forward signals, leave none behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from distxfer.launchers import FORWARDED_SIGNALS, GRACE_SECONDS, ProcessSpec


def supervise(
    processes: Sequence[ProcessSpec],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    output: TextIO | None = None,
    timeout: float | None = None,
    grace: float = GRACE_SECONDS,
) -> int:
    """Start `processes`, wait for them, and return the exit status (128+N for signal N).

    Each child runs in its own session with `env` (default: this process's environment) plus its
    own variables. With several children, or with `output`, their stdout and stderr are merged
    into `output` (default sys.stdout) line by line, prefixed `[worker i] ` when there are
    several; one child without `output` writes straight to this process's stdout and stderr.
    The first child to exit non-zero gives the status, and the others are stopped (their whole
    process groups, and their descendants). Signals received meanwhile (FORWARDED_SIGNALS, in the
    main thread) are forwarded to every child's group. After `timeout` seconds everything is
    stopped and TimeoutError raised. No child or descendant is left running on return.
    """
    if not processes:
        raise ValueError("no processes to supervise")
    base = os.environ if env is None else env
    several = len(processes) > 1
    capture = several or output is not None
    sink = output if output is not None else sys.stdout
    lock = threading.Lock()
    children: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    received: list[tuple[int, int]] = []  # (signal, children started when it came)

    def forward(signum: int, _frame: object) -> None:
        received.append((signum, len(children)))
        for child in children:
            _signal_group(child.pid, signum)

    previous: dict[int, Callable | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, forward)
    try:
        for process in processes:
            children.append(
                subprocess.Popen(
                    process.argv,
                    env={**base, **process.env},
                    cwd=cwd,
                    stdin=subprocess.DEVNULL if several else None,
                    stdout=subprocess.PIPE if capture else None,
                    stderr=subprocess.STDOUT if capture else None,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),
                )
            )
        for signum, started in list(received):  # signals that came before some had started
            for child in children[started:]:
                _signal_group(child.pid, signum)
        if capture:
            for index, child in enumerate(children):
                prefix = f"[worker {index}] " if several else ""
                reader = threading.Thread(
                    target=_relay, args=(child.stdout, prefix, sink, lock), daemon=True
                )
                reader.start()
                readers.append(reader)
        return _wait(children, timeout, grace)
    finally:
        _stop(children, grace)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for reader in readers:
            reader.join(timeout=5)


def _wait(children: list[subprocess.Popen], timeout: float | None, grace: float) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [child.poll() for child in children]
        for index, code in enumerate(codes):
            if code:
                status = code if code > 0 else 128 - code
                if len(children) > 1:
                    print(
                        f"[launch] worker {index} {_ended(code)}; stopping the others",
                        file=sys.stderr,
                        flush=True,
                    )
                return status
        if all(code == 0 for code in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"[launch] timed out after {timeout:g}s; stopping", file=sys.stderr, flush=True)
            _stop(children, grace)
            raise TimeoutError(f"processes still running after {timeout:g}s")
        time.sleep(0.05)


def _ended(code: int) -> str:
    """How a child ended, for the log: "exited with status N" or "was killed by SIGKILL"."""
    if code > 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name} (status {128 - code})"


def _stop(children: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM every running child's group, SIGKILL what is left after `grace` seconds.

    Launchers such as mpirun and horovodrun put their ranks in process groups of their own, so
    every descendant (and every member of a child's group) is noted before anything is stopped
    and again before the SIGKILL; what survives is killed, and waited for until it is gone.
    """
    running = [child for child in children if child.poll() is None]
    noted = _family(children)
    for child in running:
        _signal_group(child.pid, signal.SIGTERM)
        _signal_group(child.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process acts on it now
    deadline = time.monotonic() + grace
    while any(child.poll() is None for child in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    noted |= _family(children)
    for child in children:  # even finished ones: what they started in their group goes too
        _signal_group(child.pid, signal.SIGKILL)
    for pid, started in noted:
        if _alive(pid, started):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    for child in children:
        child.wait()
    deadline = time.monotonic() + 5  # SIGKILL is not instant: wait until they are really gone
    while any(_alive(*proc) for proc in noted) and time.monotonic() < deadline:
        time.sleep(0.02)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # the group may be gone already
        os.killpg(pgid, signum)


def _relay(pipe, prefix: str, sink: TextIO, lock: threading.Lock) -> None:
    """Copy a child's output to `sink` line by line, each line prefixed."""
    for raw in iter(pipe.readline, b""):
        line = raw.decode("utf-8", "replace")
        if not line.endswith("\n"):
            line += "\n"
        with lock:
            try:
                sink.write(prefix + line)
                sink.flush()
            except (OSError, ValueError):  # our stdout is gone: keep draining the child
                pass
    pipe.close()


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn that has Linux send SIGTERM to the child if the supervisor dies (kill -9)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the supervisor died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _alive(pid: int, started: str) -> bool:
    """Whether `pid` is still the process that started at `started`, and not a zombie."""
    fields = _proc_stat(pid)
    return bool(fields) and fields[19] == started and fields[0] not in ("Z", "X")


def _family(children: list[subprocess.Popen]) -> set[tuple[int, str]]:
    """(pid, start time) of the children's descendants and their groups' members (Linux /proc;
    empty elsewhere), the children themselves excepted."""
    try:
        entries = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return set()
    ours = {child.pid for child in children}
    kids: dict[int, list[tuple[int, str]]] = {}
    found: set[tuple[int, str]] = set()
    for pid in entries:
        fields = _proc_stat(pid)
        if fields and pid not in ours:
            kids.setdefault(int(fields[1]), []).append((pid, fields[19]))
            if int(fields[2]) in ours:
                found.add((pid, fields[19]))
    todo = list(ours)
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.add(kid)
            todo.append(kid[0])
    return found
