"""Per-file work (listing folders, reading file headers) in this thread while it keeps the CPU
busy, and on a thread pool once it mostly waits for storage.

Python threads only pay for work that waits: a stat or a read on a network file system (NFS,
Lustre, GPFS) takes about a millisecond, and a pool overlaps those waits. When the metadata and
bytes are in memory the same work is Python under the GIL, and threads contending for it only
cost: on a 2-core machine 8 threads list 1.28 million cached files 2.9x slower than one thread
does (BENCHMARKS.md, "The dataset scan"). So the work is timed in windows: while a window's wall
time stays under `WAITING_RATIO` times this thread's CPU time (which counts the system calls'
kernel time, not the waits), the next window runs here too; the first window that mostly waited
hands every remaining item to the pool. Results keep the items' order either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

WINDOW_S = 0.25  # wall time of one judged window
WAITING_RATIO = 2.0  # a window whose wall time is over this many times its CPU time waited


def map_by_storage(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    threads: int,
    name: str,
    window_s: float = WINDOW_S,
) -> list[Result]:
    """`[function(item) for item in items]`, moved to `threads` threads named `name` from the
    first window of `window_s` seconds that spent most of its time waiting."""
    results: list[Result] = []
    wall, cpu = time.perf_counter(), time.thread_time()
    for index, item in enumerate(items):
        results.append(function(item))
        elapsed = time.perf_counter() - wall
        if elapsed < window_s:
            continue
        if threads > 1 and elapsed > WAITING_RATIO * (time.thread_time() - cpu):
            with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
                results.extend(pool.map(function, items[index + 1 :]))
            return results
        wall, cpu = time.perf_counter(), time.thread_time()
    return results
