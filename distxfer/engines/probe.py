"""Does an engine really run here? Start it in fresh processes and do one tiny collective.

`distxfer doctor` reports what it finds. Each probe is launched the way a user would launch
training (two processes for horovod under horovodrun and mpirun, two TF_CONFIG workers on
loopback for multiworker, one process otherwise); each process starts the engine exactly as
`distxfer train` does, sums one number per replica and one per process, and prints what it got.
A probe passes when every process printed the expected sums; otherwise its detail is the last
line the processes wrote (usually the error), so a missing piece is named in its own words.

`python -m distxfer.engines.probe ENGINE` is one process of a probe.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from distxfer.launchers import ProcessSpec, horovodrun, mpirun, tf_config_workers
from distxfer.logs import say

PROBE_SECONDS = 120.0  # a probe that has not answered by then has failed (a hang is an answer)
WORKERS = 2
PASSED = "probe passed:"
MPIRUN_TAG = re.compile(r"\[\d+,\d+\]<std(?:out|err)>:")  # `mpirun --tag-output`


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def probe_specs(engine: str, launcher: str | None = None) -> list[ProcessSpec]:
    """The processes that probe `engine` (with `launcher`: horovod's `horovodrun` or `mpirun`)."""
    program = [sys.executable, "-m", "distxfer.engines.probe", engine]
    if engine == "multiworker":
        return tf_config_workers(program, n=WORKERS)
    if engine == "horovod" and launcher == "mpirun":
        return mpirun(program, n=WORKERS, oversubscribe=True)
    if engine == "horovod":
        return horovodrun(program, n=WORKERS, controller="gloo")
    return [ProcessSpec(program)]


def run_probe(
    engine: str, launcher: str | None = None, timeout: float = PROBE_SECONDS
) -> ProbeResult:
    """Launch the probe of `engine` and judge what its processes printed."""
    from distxfer.launchers.supervise import supervise

    specs = probe_specs(engine, launcher)
    expected = WORKERS if engine in ("horovod", "multiworker") else 1  # processes that answer
    output = io.StringIO()
    try:
        status = supervise(specs, output=output, timeout=timeout, grace=5)
    except TimeoutError:
        return ProbeResult(False, f"no answer within {timeout:.0f} s (a process hung)")
    except OSError as exc:  # the launcher itself is missing
        return ProbeResult(False, f"cannot start {specs[0].argv[0]}: {exc.strerror}")
    return judge(status, output.getvalue(), expected)


def judge(status: int, output: str, expected: int) -> ProbeResult:
    """A probe's verdict from its exit status and what its `expected` processes printed."""
    # mpirun tags each piece of a rank's output, and pieces of two ranks may share a line.
    text = MPIRUN_TAG.sub("\n", output)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    passed = [line for line in lines if PASSED in line]
    if status == 0 and len(passed) == expected:
        return ProbeResult(True, passed[0].split(PASSED, 1)[1].strip())
    last = next((line for line in reversed(lines) if PASSED not in line), "no output")
    return ProbeResult(False, f"exit status {status}: {last[-240:]}")


def probe_process(engine: str) -> str:
    """Start `engine` as training would, do the sums, and say what came out (one line)."""
    import numpy as np
    import tensorflow as tf

    from distxfer.config import EngineConfig
    from distxfer.engines import create_engine

    cpu_replicas = 2 if engine == "mirrored" else 0
    cfg = EngineConfig(name=engine, cpu_replicas=cpu_replicas, threads=1)
    started = create_engine(cfg)
    try:
        replicas = started.local_sum(started.run(lambda: tf.constant(1.0)))
        ranks = started.all_sum([np.array([started.rank + 1.0], np.float32)])[0]
        size = started.size
        if int(replicas) != started.local_replicas or int(ranks[0]) != size * (size + 1) // 2:
            raise RuntimeError(f"wrong sums: {float(replicas)} replicas, {float(ranks[0])} ranks")
        return f"{PASSED} {started.describe()}"
    finally:
        started.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    (engine,) = argv if argv is not None else sys.argv[1:]
    try:
        say(probe_process(engine))
    except Exception as exc:  # noqa: BLE001 - the probe reports any failure in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        say(f"{engine} failed: {type(exc).__name__}: {first[:200]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
