"""`distxfer bench loop`: the trainer's compiled step against Keras `model.fit`, side by side.

Same model (distxfer's own build), same in-memory data, same optimizer, one process, for a
frozen backbone (phase 1 of transfer learning) and for fine-tuning everything. Prints the ratio
loop / fit for each; the target is at least 1.0.
"""

from __future__ import annotations

import argparse
import time

from distxfer.bench.common import header, interleaved, median, quiet_worker, table, write_json

WARMUP_STEPS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--json", default="runs/bench/loop.json", help="results file")


def run(args: argparse.Namespace) -> list[dict]:
    info = header("loop", {k: v for k, v in vars(args).items() if k != "func"})
    quiet_worker()
    measurements = {}
    for trainable in ("head", "all"):
        measurements[f"fit/{trainable}"] = lambda t=trainable: _time_fit(args, t)
        measurements[f"loop/{trainable}"] = lambda t=trainable: _time_loop(args, t)
    samples = interleaved(measurements, args.repeats)
    rows = []
    for trainable in ("head", "all"):
        fit, loop = median(samples[f"fit/{trainable}"]), median(samples[f"loop/{trainable}"])
        rows.append({"trainable": trainable, "fit": fit, "loop": loop, "ratio": loop / fit})
    model = f"{args.backbone} {args.image_size}x{args.image_size}, batch {args.batch_size}"
    print(
        table(
            ["model", "trainable", "fit (img/s)", "distxfer loop (img/s)", "loop / fit"],
            [[model, r["trainable"], r["fit"], r["loop"], r["ratio"]] for r in rows],
        ),
        flush=True,
    )
    write_json(args.json, info, {"rows": rows, "samples": samples})
    return rows


def _data(args: argparse.Namespace):
    import numpy as np
    import tensorflow as tf

    size, batch = (args.image_size, args.image_size), args.batch_size
    rng = np.random.default_rng(0)
    n = 8 * batch
    data = {
        "image": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, n).astype(np.int32),
        "weight": np.ones(n, np.float32),
    }
    ds = tf.data.Dataset.from_tensor_slices(data).batch(batch, drop_remainder=True)
    return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)


def _model_and_optimizer(args: argparse.Namespace, trainable: str):
    import keras

    from distxfer.bench.engines import small_backbone_args
    from distxfer.config import ModelConfig, PhaseConfig
    from distxfer.models import apply_phase, build_model

    keras.utils.set_random_seed(0)
    model_cfg = ModelConfig(
        backbone=args.backbone, weights=None, backbone_args=small_backbone_args(args.backbone)
    )
    model = build_model(model_cfg, 10, (args.image_size, args.image_size), 3)
    apply_phase(model, PhaseConfig(trainable=trainable))
    return model, keras.optimizers.Adam(1e-3)


def _time_fit(args: argparse.Namespace, trainable: str) -> float:
    import keras

    model, optimizer = _model_and_optimizer(args, trainable)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    xy = _data(args).map(lambda b: (b["image"], b["label"]))
    model.fit(xy, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0)  # trace and warm up
    started = time.perf_counter()
    model.fit(xy, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return args.steps * args.batch_size / (time.perf_counter() - started)


def _time_loop(args: argparse.Namespace, trainable: str) -> float:
    from distxfer.engines.detect import Launch
    from distxfer.engines.single import SingleEngine
    from distxfer.train.steps import TrainStep

    model, optimizer = _model_and_optimizer(args, trainable)
    optimizer.build(model.trainable_variables)
    step = TrainStep(
        model,
        optimizer,
        SingleEngine(Launch("none")),
        global_batch=args.batch_size,
        num_classes=10,
    )
    iterator = iter(_data(args))
    step.run(iterator, WARMUP_STEPS)
    step.stats.numpy()
    started = time.perf_counter()
    step.run(iterator, args.steps)
    step.stats.numpy()  # wait for the last step
    return args.steps * args.batch_size / (time.perf_counter() - started)
