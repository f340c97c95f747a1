"""A test worker: runs the real Trainer under whatever launcher started it and reports per rank.

Each rank writes `<report_dir>/rank<r>.npz`: the weights of every local replica before training
(`i<replica>_<k>`, after the chief's weights were broadcast) and after it (`r<replica>_<k>`),
the ids of the real samples the training step itself consumed, in order, and exact evaluation
counts; with --dump-restored also `restored_rank<r>.npz` (weights and optimizer step right
after a resume). Every rank is given its OWN run directory (`<run_root>/rank<r>`), so the test
can check that only rank 0 wrote one and that the others resumed purely from what rank 0
broadcast.
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
    from distxfer.data import load_splits
    from distxfer.engines import create_engine

    config = load_config(None, args.overrides)
    splits = load_splits(config.data, config.seed)
    engine = create_engine(config.engine)
    config.output.run_dir = str(Path(args.run_root) / f"rank{engine.rank}")

    import tensorflow as tf

    from distxfer.train import phase
    from distxfer.train.hooks import Hook
    from distxfer.train.loop import Trainer

    report = Path(args.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    consumed: list[np.ndarray] = []
    initial: dict[str, np.ndarray] = {}

    class RecordingTrainStep(phase.TrainStep):
        """The real step, also recording the ids of the real samples each replica trains on."""

        def _replica_step(self, batches):
            def record(ids, weights):
                consumed.append(ids.numpy()[weights.numpy() > 0])
                return 0

            recorded = [
                tf.py_function(record, [batch["id"], batch["weight"]], tf.int32)
                for batch in batches
            ]
            with tf.control_dependencies(recorded):
                return super()._replica_step(batches)

    phase.TrainStep = RecordingTrainStep  # what set_up_phase builds each phase's step with

    class Snapshots(Hook):
        def on_phase_begin(self, trainer, index, _phase):  # after any restore, before training
            if index == 0 and not initial:
                initial.update(replica_weights(engine, trainer.model, "i"))
            if args.dump_restored:
                np.savez(
                    report / f"restored_rank{engine.rank}.npz",
                    step=trainer.position.global_step,
                    iterations=int(trainer.phase.optimizer.iterations.numpy()),
                    **replica_weights(engine, trainer.model),
                )

    trainer = Trainer(config, engine, splits, Path(config.output.run_dir), [Snapshots()])
    outcome = trainer.fit()
    result = trainer.evaluate(splits.val)
    np.savez(
        report / f"rank{engine.rank}.npz",
        outcome=outcome.value,
        ids=np.concatenate(consumed) if consumed else np.zeros(0, np.int64),
        size=engine.size,
        replicas=engine.num_replicas,
        eval_count=result.confusion.sum(),
        eval_accuracy=result.metrics["accuracy"],
        **initial,
        **replica_weights(engine, trainer.model),
    )
    engine.shutdown()


def replica_weights(engine, model, prefix: str = "r") -> dict[str, np.ndarray]:
    """Every variable's value on every local replica: `<prefix><replica>_<index>`."""
    strategy = getattr(engine, "strategy", None)
    out = {}
    for i, variable in enumerate(model.variables):
        values = (
            strategy.experimental_local_results(variable.value) if strategy else [variable.value]
        )
        for r, value in enumerate(values):
            out[f"{prefix}{r}_{i:04d}"] = np.asarray(value.numpy())
    return out


if __name__ == "__main__":
    main()
