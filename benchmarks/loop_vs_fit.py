"""Images per second of distxfer's training step against Keras `model.fit`, side by side in one run.

Same model (distxfer's own build), same in-memory data, same optimizer, one process. Prints the
ratio loop/fit for each configuration; the target is at least 0.97. Run:

    .venv/bin/python benchmarks/loop_vs_fit.py [--backbone MobileNetV2] [--image-size 96] \
        [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from distxfer.bench import small_backbone_args
    from distxfer.config import ModelConfig, PhaseConfig
    from distxfer.engines.detect import Launch
    from distxfer.engines.single import SingleEngine
    from distxfer.models import apply_phase, build_model
    from distxfer.train.steps import TrainStep

    size, batch = (args.image_size, args.image_size), args.batch_size
    rng = np.random.default_rng(0)
    n = 8 * batch
    data = {
        "image": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, n).astype(np.int32),
        "weight": np.ones(n, np.float32),
    }

    def model_and_optimizer(trainable: str):
        keras.utils.set_random_seed(0)
        model_cfg = ModelConfig(
            backbone=args.backbone, weights=None, backbone_args=small_backbone_args(args.backbone)
        )
        model = build_model(model_cfg, 10, size, 3)
        apply_phase(model, PhaseConfig(trainable=trainable))
        return model, keras.optimizers.Adam(1e-3)

    def dataset():
        ds = (
            tf.data.Dataset.from_tensor_slices(data)
            .batch(batch, drop_remainder=True)
            .cache()
            .repeat()
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    def time_fit(trainable: str) -> float:
        model, optimizer = model_and_optimizer(trainable)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        xy = dataset().map(lambda b: (b["image"], b["label"]))
        model.fit(xy, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
        started = time.perf_counter()
        model.fit(xy, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return args.steps * batch / (time.perf_counter() - started)

    def time_loop(trainable: str) -> float:
        model, optimizer = model_and_optimizer(trainable)
        optimizer.build(model.trainable_variables)
        steps = TrainStep(
            model, optimizer, SingleEngine(Launch("none")), global_batch=batch, num_classes=10
        )
        iterator = iter(dataset())
        steps.run(iterator, 5)
        steps.stats.numpy()
        started = time.perf_counter()
        steps.run(iterator, args.steps)
        steps.stats.numpy()  # wait for the last step
        return args.steps * batch / (time.perf_counter() - started)

    for trainable in ("head", "all"):
        fit, loop = [], []
        for _ in range(args.repeats):  # interleaved, medians
            fit.append(time_fit(trainable))
            loop.append(time_loop(trainable))
        f, lp = sorted(fit)[len(fit) // 2], sorted(loop)[len(loop) // 2]
        print(
            f"{args.backbone} {size[0]}x{size[1]} batch {batch}, trainable={trainable}:"
            f" fit {f:.1f} img/s, distxfer loop {lp:.1f} img/s, ratio {lp / f:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
