"""A test worker: runs the real Trainer under whatever launcher started it and reports per rank.

Each rank writes `<report_dir>/rank<r>.npz` (final weights of every local replica, the sample
ids this rank's pipeline fed in epoch 0, exact evaluation counts) and, with --dump-restored,
`restored_rank<r>.npz` (weights and optimizer step right after a resume). Every rank is given its
OWN run directory (`<run_root>/rank<r>`), so the test can check that only rank 0 wrote one and
that the others resumed purely from what rank 0 broadcast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-dir", required=True)
    parser.add_argument("--run-root", required=True)
    parser.add_argument("--dump-restored", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from distxfer.logs import quiet_tensorflow

    quiet_tensorflow()
    from distxfer.config import load_config
    from distxfer.data import load_splits, train_dataset
    from distxfer.engines import create_engine
    from distxfer.run import resolve_config

    config = resolve_config(load_config(None, args.overrides))
    splits = load_splits(config.data, config.seed)
    engine = create_engine(config.engine)
    config.output.run_dir = str(Path(args.run_root) / f"rank{engine.rank}")

    from distxfer.train.hooks import Hook
    from distxfer.train.loop import Trainer

    report = Path(args.report_dir)
    report.mkdir(parents=True, exist_ok=True)

    class DumpRestored(Hook):
        def on_phase_begin(self, trainer, index, phase):  # after any restore, before training
            np.savez(
                report / f"restored_rank{engine.rank}.npz",
                step=trainer.position.global_step,
                iterations=int(trainer.optimizer.iterations.numpy()),
                **replica_weights(engine, trainer.model),
            )

    trainer = Trainer(
        config,
        engine,
        splits,
        Path(config.output.run_dir),
        [DumpRestored()] if args.dump_restored else [],
    )
    outcome = trainer.fit()
    ids = fed_ids(train_dataset, splits.train, config, engine)
    result = trainer.evaluate(splits.val)
    np.savez(
        report / f"rank{engine.rank}.npz",
        outcome=outcome,
        ids=ids,
        size=engine.size,
        replicas=engine.num_replicas,
        eval_count=result.confusion.sum(),
        eval_accuracy=result.metrics["accuracy"],
        **replica_weights(engine, trainer.model),
    )
    engine.shutdown()


def replica_weights(engine, model) -> dict[str, np.ndarray]:
    """Every variable's value on every local replica: `r<replica>_<index>`."""
    strategy = getattr(engine, "strategy", None)
    out = {}
    for i, variable in enumerate(model.variables):
        values = (
            strategy.experimental_local_results(variable.value) if strategy else [variable.value]
        )
        for r, value in enumerate(values):
            out[f"r{r}_{i:04d}"] = np.asarray(value.numpy())
    return out


def fed_ids(train_dataset, split, config, engine) -> np.ndarray:
    """The real (weight > 0) sample ids this process's pipeline feeds in epoch 0."""
    dataset, _ = train_dataset(
        split,
        cfg=config.data,
        image_size=tuple(config.data.image_size),
        channels=3,
        per_replica_batch=config.data.batch_size,
        replicas_per_pipeline=engine.local_replicas,
        num_pipelines=engine.size,
        pipeline=engine.rank,
        seed=config.seed,
        epoch=0,
    )
    ids = [batch["id"].numpy()[batch["weight"].numpy() > 0] for batch in dataset]
    return np.concatenate(ids)


if __name__ == "__main__":
    main()
