"""Per-file work stays in the calling thread while it is CPU-bound and moves to a pool once it
waits for storage; the results keep the items' order."""

from __future__ import annotations

import threading
import time

from distxfer.data.storagemap import map_by_storage


def _where(work):
    """`work`, then the name of the thread that ran it."""

    def run(item: int) -> tuple[int, str]:
        work()
        return item, threading.current_thread().name

    return run


def _busy() -> None:
    end = time.thread_time() + 0.002
    while time.thread_time() < end:
        pass


def test_cpu_bound_work_stays_in_the_calling_thread():
    results = map_by_storage(_where(_busy), range(100), threads=8, name="pool", window_s=0.02)
    assert [item for item, _ in results] == list(range(100))
    assert {thread for _, thread in results} == {threading.current_thread().name}


def test_work_that_waits_moves_to_the_pool_from_the_first_judged_window():
    results = map_by_storage(
        _where(lambda: time.sleep(0.005)), range(60), threads=4, name="pool", window_s=0.02
    )
    assert [item for item, _ in results] == list(range(60))
    here = [i for i, (_, thread) in enumerate(results) if not thread.startswith("pool")]
    assert here == list(range(len(here))) and 1 <= len(here) <= 10  # the first window only
    assert all(thread.startswith("pool") for _, thread in results[len(here) :])


def test_one_thread_never_starts_a_pool():
    results = map_by_storage(
        _where(lambda: time.sleep(0.002)), range(30), threads=1, name="pool", window_s=0.01
    )
    assert {thread for _, thread in results} == {threading.current_thread().name}


def test_no_items_give_no_results():
    assert map_by_storage(_where(_busy), [], threads=4, name="pool") == []
