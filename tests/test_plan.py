"""The data plan: every sample once per epoch, equal steps everywhere, global batches that do not
depend on the workers."""

from __future__ import annotations

import numpy as np
import pytest

from distxfer.data.plan import epoch_order, plan_epoch, plan_file_shards


def step_batches(plans, per_pipeline: int):
    """Real sample ids of each global step, from the pipelines' plans."""
    steps = plans[0].steps
    out = []
    for k in range(steps):
        ids = []
        for plan in plans:
            sl = slice(k * per_pipeline, (k + 1) * per_pipeline)
            ids += [int(i) for i, w in zip(plan.indices[sl], plan.weights[sl]) if w > 0]
        out.append(sorted(ids))
    return out


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_sample_once_per_epoch_and_same_steps_everywhere(workers):
    per_replica, local = 4, 2
    g = per_replica * local * workers
    plans = [
        plan_epoch(
            103, g, seed=7, epoch=2, shuffle=True, training=True, pipeline=i, num_pipelines=workers
        )
        for i in range(workers)
    ]
    assert len({p.steps for p in plans}) == 1
    assert all(len(p.indices) == p.steps * per_replica * local for p in plans)
    seen = sorted(int(i) for p in plans for i, w in zip(p.indices, p.weights) if w > 0)
    assert seen == list(range(103))


def test_global_steps_do_not_depend_on_the_number_of_workers():
    single = step_batches([plan_epoch(50, 8, seed=1, epoch=0, shuffle=True, training=True)], 8)
    two = step_batches(
        [
            plan_epoch(
                50, 8, seed=1, epoch=0, shuffle=True, training=True, pipeline=i, num_pipelines=2
            )
            for i in range(2)
        ],
        4,
    )
    assert single == two


def test_last_partial_step_weights_make_the_loss_a_mean_over_real_samples():
    plan = plan_epoch(10, 4, seed=0, epoch=0, shuffle=False, training=True)
    assert plan.steps == 3
    last = plan.weights[8:]
    assert list(last) == [2.0, 2.0, 0.0, 0.0]  # 2 real samples of a global batch of 4
    assert last.sum() == pytest.approx(4.0)


def test_evaluation_weights_are_zero_or_one():
    plan = plan_epoch(10, 4, seed=0, epoch=0, shuffle=False, training=False)
    assert set(plan.weights.tolist()) == {0.0, 1.0} and plan.num_real == 10


def test_start_step_skips_exactly_the_steps_taken():
    full = plan_epoch(
        40, 8, seed=3, epoch=1, shuffle=True, training=True, pipeline=1, num_pipelines=2
    )
    rest = plan_epoch(
        40,
        8,
        seed=3,
        epoch=1,
        shuffle=True,
        training=True,
        pipeline=1,
        num_pipelines=2,
        start_step=2,
    )
    assert rest.steps == full.steps - 2
    assert np.array_equal(rest.indices, full.indices[2 * 4 :])


def test_order_depends_on_seed_and_epoch_only():
    assert np.array_equal(epoch_order(100, 1, 5, True), epoch_order(100, 1, 5, True))
    assert not np.array_equal(epoch_order(100, 1, 5, True), epoch_order(100, 1, 6, True))
    assert not np.array_equal(epoch_order(100, 2, 5, True), epoch_order(100, 1, 5, True))
    assert np.array_equal(epoch_order(5, 1, 5, False), np.arange(5))


def test_file_shards_are_disjoint_and_steps_fit_the_fullest_worker():
    counts = [10, 7, 9, 3, 12]
    mine = [
        plan_file_shards(counts, 4, seed=0, epoch=0, shuffle=True, pipeline=i, num_pipelines=2)
        for i in range(2)
    ]
    files = sorted(f for files, _ in mine for f in files)
    assert files == list(range(5))
    assert mine[0][1] == mine[1][1]
    assert mine[0][1] * 4 >= max(sum(counts[f] for f in fs) for fs, _ in mine)


def test_fewer_record_files_than_workers_is_an_error():
    with pytest.raises(ValueError, match="cannot feed 3 workers"):
        plan_file_shards([5, 5], 4, seed=0, epoch=0, shuffle=True, pipeline=0, num_pipelines=3)
