"""Using a trained run: evaluate it on labelled folders, predict classes for images, export it.

A run directory holds everything needed: `config.yaml`, `classes.json` and checkpoints. The model
is rebuilt from the config with random weights (no ImageNet download, no weights file needed)
and the checkpoint's values are loaded into it. `predict` also takes an exported `.keras` file
with its `.json` sidecar.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from distxfer.atomic import write_bytes
from distxfer.checkpoint import CheckpointStore, Snapshot, check_fits, read_snapshot
from distxfer.config import Config, load_config
from distxfer.data import Batching, load_splits, quick_scan
from distxfer.data.listing import IMAGE_EXTENSIONS, check_same_classes
from distxfer.engines import create_engine
from distxfer.errors import CheckpointError, ConfigError, DataError
from distxfer.report import build_report, write_report

log = logging.getLogger(__name__)


def load_run(
    run_dir: Path, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[Config, list[str]]:
    """A run's resolved config (with overrides) and class names."""
    config_path, classes_path = run_dir / "config.yaml", run_dir / "classes.json"
    if not config_path.is_file() or not classes_path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a distxfer run directory (no config.yaml/classes.json);"
            " pass the output.run_dir of a training run"
        )
    config = load_config(config_path, ["engine.name=auto", *overrides])
    return config, json.loads(classes_path.read_text())


def run_snapshot(run_dir: Path, config: Config, which: str) -> tuple[Snapshot, str]:
    """The checkpoint `which` (final | latest | best | a file) of a run, and where it came from."""
    store = CheckpointStore(
        run_dir / "checkpoints",
        keep=config.output.keep_checkpoints,
        best_metric=config.output.best_metric,
        writer=False,
    )
    if which in ("final", "latest"):
        snapshot, where = store.latest(), "the latest checkpoint"
        if snapshot is not None and which == "final" and not snapshot.state.finished:
            log.warning(
                "the run in %s has not finished; using its latest checkpoint (step %d)",
                run_dir,
                snapshot.state.global_step,
            )
    elif which == "best":
        snapshot, where = store.best(), f"the best checkpoint by {config.output.best_metric}"
    else:
        path = Path(which)
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {path} does not exist; use final, latest, best or a ckpt-*.npz file"
            )
        snapshot, where = read_snapshot(path), str(path)
    if snapshot is None:
        raise CheckpointError(
            f"{run_dir} has no {which} checkpoint yet; train first (distxfer train)"
        )
    return snapshot, where


def trained_model(
    run_dir: Path,
    which: str = "final",
    overrides: list[str] | tuple[str, ...] = (),
    scope: Any = None,
) -> tuple[Any, Config, list[str], str]:
    """(model with the checkpoint's weights, config, class names, checkpoint description)."""
    import keras

    from distxfer.models import build_model

    config, class_names = load_run(run_dir, overrides)
    snapshot, where = run_snapshot(run_dir, config, which)
    model_cfg = replace(config.model, weights=None)  # the checkpoint supplies every weight
    data = config.data
    keras.config.set_dtype_policy(config.precision)  # compute as the run trained
    with scope or contextlib.nullcontext():
        model = build_model(model_cfg, len(class_names), data.image_hw, data.channels)
    check_fits(snapshot.model, model.variables, "model", where)
    for variable, value in zip(model.variables, snapshot.model):
        variable.assign(value)
    return model, config, class_names, f"{where} (step {snapshot.state.global_step})"


def evaluate_run(
    run_dir: Path,
    *,
    data_dir: str | None = None,
    checkpoint: str = "final",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Evaluate a run on labelled class folders; the chief writes `eval/evaluate_<name>.*`."""
    from distxfer.train.evaluate import Evaluator  # TensorFlow: only once the input is checked

    config, class_names = load_run(run_dir, overrides)
    target = data_dir or config.data.test_dir or config.data.val_dir
    if not target:
        raise ConfigError("there is nothing to evaluate on: pass --data DIR (class folders)")
    data_cfg = replace(
        config.data, train_dir=target, val_dir=None, val_split=0.0, folds=0, test_dir=None
    )
    splits = load_splits(data_cfg, config.seed)
    check_same_classes(
        tuple(class_names), splits.class_names, "--data", target, expected_from="the run's classes"
    )
    assert splits.train is not None
    engine = create_engine(config.engine)
    model, config, _, where = trained_model(run_dir, checkpoint, overrides, scope=engine.scope())
    batching = Batching(config.data.batch_size, engine.local_replicas, engine.size, engine.rank)
    result = Evaluator(model, engine, batching, data_cfg)(splits.train)
    report = build_report(
        result.metrics,
        result.confusion,
        class_names,
        split=Path(target).name,
        run_dir=str(run_dir),
        checkpoint=where,
        data_dir=str(target),
    )
    if engine.is_chief:
        path = write_report(run_dir / "eval", report, f"evaluate_{Path(target).name}")
        print(
            ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
            + f"  ({report['samples']} images)"
        )
        print(f"report: {path}")
    engine.shutdown()
    return report


def image_files(inputs: list[Path]) -> list[Path]:
    """Image files named directly, and those found recursively in named folders (sorted)."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(
                p
                for p in item.rglob("*")
                if p.name.lower().endswith(IMAGE_EXTENSIONS)
                and not p.name.startswith(".")
                and p.is_file()
            )
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item} does not exist; pass image files or folders of images")
    if not files:
        raise DataError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, inputs))}"
        )
    return files


def _predictor(
    model_path: Path, checkpoint: str, trust_code: bool = False
) -> tuple[Any, list[str], tuple[int, int], int]:
    """(probability model, class names, image size, channels) of a run directory or an export
    (loaded in Keras's safe mode unless `trust_code`)."""
    from distxfer.models import probability_model
    from distxfer.models.safe_load import load_keras_model

    if model_path.is_dir():
        model, config, class_names, where = trained_model(model_path, checkpoint)
        log.info("predicting with %s", where)
        return probability_model(model), class_names, config.data.image_hw, config.data.channels
    sidecar = model_path.with_suffix(".json")
    if model_path.suffix != ".keras" or not sidecar.is_file():
        raise ConfigError(
            f"{model_path} is neither a run directory nor a .keras export with its .json sidecar"
        )
    info = json.loads(sidecar.read_text())
    model = load_keras_model(model_path, trust_code=trust_code)
    return model, list(info["class_names"]), tuple(info["image_size"]), int(info["channels"])


def predict_to_csv(
    model_path: Path,
    inputs: list[Path],
    output: Path,
    *,
    top_k: int = 3,
    batch_size: int = 32,
    checkpoint: str = "final",
    trust_code: bool = False,
) -> Path:
    """Classify images; write one CSV row per file with its top-k classes and probabilities.
    A `.keras` file holding Python code (a Lambda layer) is refused unless `trust_code`."""
    if top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    files = image_files(inputs)
    bad = {b.path: b.reason for b in quick_scan([str(f) for f in files])}
    good = [f for f in files if str(f) not in bad]
    model, class_names, size, channels = _predictor(model_path, checkpoint, trust_code)
    k = min(top_k, len(class_names))
    probabilities = (
        _probabilities(model, good, size, channels, batch_size) if good else np.zeros((0, 0))
    )
    rows = iter(probabilities)
    header = (
        ["path"]
        + [f"{kind}_{i + 1}" for i in range(k) for kind in ("class", "probability")]
        + ["error"]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for path in files:
        if str(path) in bad:
            writer.writerow([str(path)] + [""] * (2 * k) + [bad[str(path)]])
            continue
        p = next(rows)
        best = np.argsort(-p, kind="stable")[:k]
        writer.writerow(
            [str(path)] + [v for i in best for v in (class_names[i], f"{p[i]:.6f}")] + [""]
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(output, buffer.getvalue().encode())
    print(
        f"{len(good)} image(s) classified"
        + (f", {len(bad)} unreadable (see the error column)" if bad else "")
        + f": {output}"
    )
    return output


def _probabilities(
    model: Any, files: list[Path], size: tuple[int, int], channels: int, batch: int
) -> np.ndarray:
    import tensorflow as tf

    from distxfer.data.decode import load_image

    dataset = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    dataset = dataset.map(
        lambda p: load_image(p, size, channels), num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = dataset.batch(batch).prefetch(tf.data.AUTOTUNE)
    return np.concatenate([np.asarray(model(images, training=False)) for images in dataset])


def export_run(
    run_dir: Path, output: Path | None = None, *, formats: str = "both", checkpoint: str = "final"
) -> list[Path]:
    """Export a run's model as `.keras` and/or a TF SavedModel (each with a .json sidecar), or
    its backbone (`formats="backbone"`: weights file, `.keras` feature model and sidecar)."""
    from distxfer.export import export_backbone, export_keras, export_savedmodel

    model, config, class_names, where = trained_model(run_dir, checkpoint)
    output = output or run_dir / "export"
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    if formats in ("keras", "both"):
        paths.append(
            export_keras(model, output / "model.keras", class_names=class_names, config=config)
        )
    if formats in ("savedmodel", "both"):
        paths.append(
            export_savedmodel(model, output / "savedmodel", class_names=class_names, config=config)
        )
    if formats == "backbone":
        paths += export_backbone(model, output, config=config)
    log.info("exported %s", where)
    return paths
