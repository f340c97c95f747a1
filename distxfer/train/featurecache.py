"""The frozen-phase feature cache: while the backbone is frozen, run it once, train the head.

In phase 1 of transfer learning every step runs the frozen backbone forward over images it has
seen before and gets the same features again; only the head learns. When nothing changes an
image between epochs (no augmentation) and the backbone runs in inference mode
(`model.batchnorm: frozen`), distxfer instead runs the backbone once over the training and
validation images, sharded across the workers (each computes the rows of its own evaluation
share, and a sum over workers, to which every other worker adds zeros, gives every worker all
rows exactly), and the phase trains the model's head (the layers after the backbone's pooling,
the same variables) on those rows: a `FeatureSplit`, with the images' epoch plan, weights and
order. Features are kept under `$DISTXFER_CACHE/features`, keyed by the split's fingerprint, the
backbone, a digest of its weights, the image size and the precision, so any change computes them
again. On by default where it applies (`data.feature_cache: false` turns it off); the log says
which it is and why. Later phases, final evaluation and exports use the whole model on images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from distxfer.atomic import replacing
from distxfer.config import Config
from distxfer.data import Batching, DataSplits, Split
from distxfer.data.cache import available_memory
from distxfer.data.featuresplit import FeatureSplit
from distxfer.data.pipeline import eval_dataset
from distxfer.data.scancache import cache_root
from distxfer.engines import Engine
from distxfer.models import backbone_of
from distxfer.train.epochs import Epochs
from distxfer.train.evaluate import EvalResult, Evaluator

log = logging.getLogger(__name__)

VERSION = 1
POOL = "head_pool"  # the layer whose output the cache holds (see distxfer.models.build)
CHUNK = 1 << 22  # values per all-reduce when the features are gathered
MEMORY_SHARE = 0.4  # of available memory the features (twice over: array and tensor) may use


class ImageInputs:
    """What a phase trains and validates on, by default: images through the whole model."""

    def __init__(self, model: keras.Model, epochs: Epochs, evaluate: Evaluator, val: Split | None):
        self.model, self.epochs, self.evaluate, self.val = model, epochs, evaluate, val

    def dataset(self, index: int, start_step: int = 0) -> tuple[tf.data.Dataset, int]:
        """This pipeline's batches of run-wide epoch `index` from `start_step` on."""
        return self.epochs.dataset(index, start_step)

    def validate(self, prefix: str = "") -> EvalResult | None:
        """Exact metrics over the validation split (None without one)."""
        return None if self.val is None else self.evaluate(self.val, prefix=prefix)


class FeatureInputs(ImageInputs):
    """The head on cached features; they are computed (or loaded) when first needed, on every
    rank at the same point, after the phase's weights are restored or broadcast."""

    def __init__(
        self,
        config: Config,
        model: keras.Model,
        engine: Engine,
        splits: DataSplits,
        batching: Batching,
    ) -> None:
        self.config, self.full, self.engine, self.splits = config, model, engine, splits
        self.batching = batching
        self.model = head_model(model)
        self._ready = False

    def dataset(self, index: int, start_step: int = 0) -> tuple[tf.data.Dataset, int]:
        self._prepare()
        return super().dataset(index, start_step)

    def validate(self, prefix: str = "") -> EvalResult | None:
        self._prepare()
        return super().validate(prefix)

    def _prepare(self) -> None:
        if self._ready:
            return
        digest = weights_digest(self.full)
        made = {}
        for role in ("train", "val"):
            split = getattr(self.splits, role)
            if split is not None:
                made[role] = features_of(self, split, role, digest)
        self.epochs = Epochs(self.config, made["train"], self.batching)
        self.evaluate = Evaluator(self.model, self.engine, self.batching, self.config.data)
        self.val = made.get("val")
        self._ready = True


def phase_inputs(
    config: Config,
    index: int,
    model: keras.Model,
    engine: Engine,
    splits: DataSplits,
    batching: Batching,
    images: ImageInputs,
) -> ImageInputs:
    """The inputs phase `index` trains on: the feature cache where it applies, else `images`."""
    reason = why_not(config, index, model, splits)
    phase = config.phases[index]
    if reason is None:
        log.info(
            "phase %d '%s': feature cache on: the frozen backbone runs once over the data and"
            " the head trains on its features (data.feature_cache: false trains on images)",
            index + 1,
            phase.name,
        )
        return FeatureInputs(config, model, engine, splits, batching)
    if phase.trainable_spec.kind == "head" and backbone_of(model) is not None:
        log.info("phase %d '%s': no feature cache (%s)", index + 1, phase.name, reason)
    return images


def why_not(config: Config, index: int, model: keras.Model, splits: DataSplits) -> str | None:
    """Why phase `index` cannot train on cached features, or None when it can."""
    data = config.data
    if not data.feature_cache:
        return "data.feature_cache: false"
    if backbone_of(model) is None:
        return "the model has no backbone"
    if config.phases[index].trainable_spec.kind != "head":
        return "the backbone learns in this phase"
    if config.model.batchnorm != "frozen":
        return "model.batchnorm: train runs the backbone in training mode"
    if data.augment.enabled:
        return "augmentation changes the images every epoch"
    count = sum(len(s) for s in (splits.train, splits.val) if s is not None)
    needed = 2 * 4 * count * int(np.prod(model.get_layer(POOL).output.shape[1:]))
    available = available_memory()
    if available is not None and needed > MEMORY_SHARE * available:
        return f"the features need {needed / 1e9:.1f} GB of memory, more than is free"
    return None


def head_model(model: keras.Model) -> keras.Model:
    """The layers after the backbone's pooling, as a model from pooled features to logits; it
    shares the classifier's layers and variables."""
    pool = model.get_layer(POOL)
    x = inputs = keras.Input(shape=tuple(pool.output.shape[1:]), name="features")
    for layer in model.layers[model.layers.index(pool) + 1 :]:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def weights_digest(model: keras.Model) -> str:
    """A digest of the backbone's weights: changes whenever they do."""
    backbone = backbone_of(model)
    assert backbone is not None
    digest = hashlib.sha256()
    for variable in backbone.weights:
        digest.update(np.ascontiguousarray(np.asarray(variable.numpy())).tobytes())
    return digest.hexdigest()


def features_of(inputs: FeatureInputs, split: Split, role: str, digest: str) -> FeatureSplit:
    """The split's features: from the cache if every rank finds them there, else computed
    sharded across the workers and gathered (then cached by the chief)."""
    config, engine = inputs.config, inputs.engine
    key = feature_key(config, split, digest)
    path = os.path.join(cache_root(), "features", f"{key}-{role}.npz")
    have = float(os.path.exists(path))
    if engine.all_sum([np.array([have])])[0][0] == engine.size:
        with np.load(path) as saved:
            log.info("%s features read from %s", role, path)
            return FeatureSplit(role, saved["features"], saved["labels"], key)
    features, labels = compute_features(inputs.full, split, inputs.batching, config)
    features, labels = gather(engine, features, labels)
    log.info("%s features: %d x %d computed by %d worker(s)", role, *features.shape, engine.size)
    if engine.is_chief:
        _save(path, features, labels)
    return FeatureSplit(role, features, labels, key)


def feature_key(config: Config, split: Split, digest: str) -> str:
    model = config.model
    facts = [VERSION, split.fingerprint, model.backbone, model.backbone_args, digest]
    facts += [config.data.image_hw, config.data.channels, config.precision, model.head.pooling]
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compute_features(
    model: keras.Model, split: Split, batching: Batching, config: Config
) -> tuple[np.ndarray, np.ndarray]:
    """This pipeline's share of the split through the frozen backbone and pooling: float32
    rows [N, D] and labels [N], zero outside this pipeline's samples."""
    pooled = keras.Model(model.input, model.get_layer(POOL).output)
    run = tf.function(lambda images: pooled(images, training=False))
    share = Batching(batching.per_pipeline, 1, batching.num_pipelines, batching.pipeline)
    dataset, _ = eval_dataset(split, share, cfg=config.data)
    features = np.zeros((len(split), int(np.prod(pooled.output.shape[1:]))), np.float32)
    labels = np.zeros(len(split), np.int32)
    for batch in dataset:
        real = batch["weight"].numpy() > 0
        ids = batch["id"].numpy()[real]
        out = tf.cast(run(batch["image"]), tf.float32).numpy()
        features[ids] = out.reshape(len(out), -1)[real]
        labels[ids] = batch["label"].numpy()[real]
    return features, labels


def gather(engine: Engine, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Any]:
    """Every worker's rows on every worker: each sample's row is non-zero on one worker only,
    so the sum over workers is that row exactly."""
    if engine.size == 1:
        return features, labels
    flat = features.reshape(-1)
    parts = [engine.all_sum([flat[i : i + CHUNK]])[0] for i in range(0, len(flat), CHUNK)]
    summed = np.concatenate(parts).astype(np.float32).reshape(features.shape)
    counts = engine.all_sum([labels.astype(np.float64)])[0]
    return summed, np.rint(counts).astype(np.int32)


def _save(path: str, features: np.ndarray, labels: np.ndarray) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with replacing(path, suffix=".npz") as tmp:
            np.savez(tmp, features=features, labels=labels)
    except OSError as error:
        log.warning("could not keep the features in %s (%s)", path, error)
