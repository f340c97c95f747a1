"""The full scan (`data.scan: full`): decode every image with the pipeline's own decoder.

`load_splits` runs before the distributed engine starts and must not start TensorFlow in the
training process (the engine still has to configure devices), so it runs the decode in a
child process: `python -m distxfer.data.fullscan PATHS.json RESULT.json`, with GPUs hidden.
`find_undecodable` is the in-process version, for callers that already run TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from distxfer.data.scan import CONVERT
from distxfer.data.splits import BadFile
from distxfer.errors import DataError


def find_undecodable(paths: Sequence[str], *, batch: int = 256) -> list[BadFile]:
    """The files among `paths` that `decode_image` fails on, with TensorFlow's reason."""
    import tensorflow as tf

    from distxfer.data.decode import decode_image

    if not paths:
        return []
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
    ds = ds.map(
        lambda i, p: (i, tf.shape(decode_image(tf.io.read_file(p), 3))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    decoded = np.zeros(len(paths), bool)
    for ids, _ in ds.ignore_errors().batch(batch).as_numpy_iterator():
        decoded[ids] = True
    return [BadFile(paths[i], decode_error(paths[i])) for i in np.flatnonzero(~decoded)]


def decode_error(path: str) -> str:
    """Decode one file eagerly to get TensorFlow's message for it."""
    import tensorflow as tf

    from distxfer.data.decode import decode_image

    try:
        decode_image(tf.io.read_file(path), 3)
    except Exception as error:  # noqa: BLE001 - any failure is the file's problem here
        message = str(error).split("}}")[-1].split("[Op:")[0].strip() or type(error).__name__
        return f"cannot be decoded by TensorFlow ({message}); {CONVERT}"
    return f"failed to decode once, then decoded; check the file or disk, or {CONVERT}"


def full_scan_in_subprocess(paths: Sequence[str]) -> list[BadFile]:
    """`find_undecodable` in a child Python process that has GPUs hidden."""
    if not paths:
        return []
    with tempfile.TemporaryDirectory(prefix="distxfer-fullscan-") as tmp:
        request, result = os.path.join(tmp, "paths.json"), os.path.join(tmp, "bad.json")
        with open(request, "w", encoding="utf-8") as f:
            json.dump(list(paths), f)
        package_parent = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        )
        env = dict(
            os.environ,
            CUDA_VISIBLE_DEVICES="-1",
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONPATH=os.pathsep.join(
                filter(None, [package_parent, os.environ.get("PYTHONPATH")])
            ),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "distxfer.data.fullscan", request, result],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(
                f"the full image scan (data.scan=full) failed: {last}; set "
                "data.scan=quick to train without it"
            )
        with open(result, encoding="utf-8") as f:
            return [BadFile(path, reason) for path, reason in json.load(f)]


def main(argv: Sequence[str] | None = None) -> None:
    request, result = argv or sys.argv[1:]
    with open(request, encoding="utf-8") as f:
        paths = json.load(f)
    bad = find_undecodable(paths)
    with open(result, "w", encoding="utf-8") as f:
        json.dump([[b.path, b.reason] for b in bad], f)


if __name__ == "__main__":
    main()
