"""The tf.data pipeline over folder splits: output contract, sharding, resume, determinism,
cache."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from imagefiles import class_tree, encode, noise, write

tf = pytest.importorskip("tensorflow")

from distxfer.config.schema import AugmentConfig, DataConfig  # noqa: E402
from distxfer.data.cache import clear_loaded  # noqa: E402
from distxfer.data.layout import Batching  # noqa: E402
from distxfer.data.load import load_splits  # noqa: E402
from distxfer.data.pipeline import eval_dataset, train_dataset  # noqa: E402

AUG = AugmentConfig(rotation=20, zoom=0.1, horizontal_flip=True, brightness=[0.8, 1.2])


@pytest.fixture
def data(tmp_path):
    """13 images in 3 classes: no batch size used here divides it."""
    root = tmp_path / "data"
    class_tree(root, {"a": 5, "b": 4, "c": 4}, size=6)
    return root, load_splits(DataConfig(train_dir=str(root)), seed=0).train


def run(
    split,
    *,
    training=True,
    augment=AUG,
    pipeline=0,
    pipelines=1,
    replicas=1,
    batch=2,
    epoch=0,
    start_step=0,
    channels=3,
    cache="none",
    cache_dir=None,
    crop=None,
    augment_on="host",
    size=4,
):
    cfg = DataConfig(
        augment_on=augment_on,
        cache=cache,
        image_size=[size, size],
        color_mode="grayscale" if channels == 1 else "rgb",
        augment=AugmentConfig(**{**vars(augment), "random_resized_crop": crop}),
    )
    batching = Batching(batch, replicas, pipelines, pipeline)
    if training:
        ds, steps = train_dataset(
            split,
            batching,
            cfg=cfg,
            seed=3,
            epoch=epoch,
            start_step=start_step,
            cache_dir=cache_dir,
        )
    else:
        ds, steps = eval_dataset(split, batching, cfg=cfg, cache_dir=cache_dir)
    return list(ds.as_numpy_iterator()), steps, ds


def entries(batches):
    """(id, weight, image) of every entry, in order."""
    return [
        (int(i), float(w), img)
        for b in batches
        for i, w, img in zip(b["id"], b["weight"], b["image"], strict=True)
    ]


def test_batches_follow_the_output_contract(data):
    _, split = data
    batches, _, ds = run(split, batch=3)
    spec = ds.element_spec
    assert {k: (v.dtype, tuple(v.shape)) for k, v in spec.items()} == {
        "image": (tf.uint8, (3, 4, 4, 3)),
        "label": (tf.int32, (3,)),
        "weight": (tf.float32, (3,)),
        "id": (tf.int64, (3,)),
    }
    assert batches[0]["image"].dtype == np.uint8


def test_a_pipeline_yields_steps_times_replicas_full_batches(data):
    _, split = data
    batches, steps, _ = run(split, pipelines=2, replicas=2, batch=2)  # global batch 8 -> 2 steps
    assert steps == 2 and len(batches) == 4
    assert all(len(b["id"]) == 2 for b in batches)


def test_epoch_steps_predicts_the_steps_of_a_folder_epoch(data):
    _, split = data
    assert split.epoch_steps(Batching(2, 2, 2), seed=0, epoch=0, shuffle=True) == 2


def test_every_sample_is_trained_once_per_epoch_across_two_pipelines(data):
    _, split = data
    ids = Counter()
    for p in range(2):
        ids.update(i for i, w, _ in entries(run(split, pipeline=p, pipelines=2)[0]) if w > 0)
    assert sorted(ids) == list(range(13)) and set(ids.values()) == {1}


def test_every_global_step_weighs_as_a_full_batch(data):
    _, split = data
    per_step = np.zeros(4)  # 13 samples, global batch 4
    for p in range(2):
        for j, b in enumerate(run(split, pipeline=p, pipelines=2, replicas=1, batch=2)[0]):
            per_step[j] += b["weight"].sum()
    np.testing.assert_allclose(per_step, 4.0, rtol=1e-6)


def test_evaluation_counts_every_sample_exactly_once_with_unit_weights(data):
    _, split = data
    seen = Counter()
    for p in range(2):
        batches, steps, _ = run(split, training=False, pipeline=p, pipelines=2, batch=3)
        assert steps == 3 and len(batches) == 3
        for b in batches:
            assert set(b["weight"].tolist()) <= {0.0, 1.0}
            seen.update(b["id"][b["weight"] == 1].tolist())
            assert b["label"].tolist() == split.labels[b["id"]].tolist()
    assert sorted(seen) == list(range(13)) and set(seen.values()) == {1}


def test_resuming_at_a_step_gives_the_rest_of_the_same_epoch(data):
    _, split = data
    full = run(split, replicas=2, batch=2)[0]
    rest, steps, _ = run(split, replicas=2, batch=2, start_step=2)
    assert steps == 2 and len(rest) == 4
    for a, b in zip(full[4:], rest, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_same_seed_and_epoch_give_identical_batches(data):
    _, split = data
    first, again = run(split, epoch=1)[0], run(split, epoch=1)[0]
    for a, b in zip(first, again, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_another_epoch_takes_another_order(data):
    _, split = data
    order = [[i for i, _, _ in entries(run(split, epoch=e)[0])] for e in (0, 1)]
    assert order[0] != order[1]


def test_a_sample_is_augmented_the_same_on_any_pipeline(data):
    _, split = data
    one = {i: img for i, w, img in entries(run(split, replicas=2, batch=2)[0]) if w > 0}
    two = {}
    for p in range(2):
        two.update(
            {i: img for i, w, img in entries(run(split, pipeline=p, pipelines=2)[0]) if w > 0}
        )
    assert sorted(one) == sorted(two) == list(range(13))
    assert all(np.array_equal(one[i], two[i]) for i in one)


def test_training_augments_and_evaluation_does_not(data):
    _, split = data
    plain = {i: img for i, _, img in entries(run(split, augment=AugmentConfig())[0])}
    augmented = {i: img for i, _, img in entries(run(split)[0])}
    evaluated = {i: img for i, _, img in entries(run(split, training=False)[0])}
    assert any(not np.array_equal(plain[i], augmented[i]) for i in plain)
    assert all(np.array_equal(plain[i], evaluated[i]) for i in plain)


def test_grayscale_gives_one_channel(data):
    _, split = data
    assert run(split, channels=1)[0][0]["image"].shape == (2, 4, 4, 1)


def test_random_resized_crop_keeps_the_image_size(data):
    _, split = data
    batches = run(split, augment=AugmentConfig(), crop=[0.3, 0.6])[0]
    plain = run(split, augment=AugmentConfig())[0]
    assert batches[0]["image"].shape == (2, 4, 4, 3)
    assert not np.array_equal(batches[0]["image"], plain[0]["image"])


def test_auto_sharding_is_off(data):
    _, split = data
    options = run(split)[2].options()
    assert (
        options.experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.OFF
    )


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_cache_gives_the_same_pixels_as_decoding(data, tmp_path, mode):
    _, split = data
    clear_loaded()
    decoded = run(split, training=False)[0]
    cached = run(split, training=False, cache=mode, cache_dir=str(tmp_path / "cache"))[0]
    for a, b in zip(decoded, cached, strict=True):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["id"], b["id"])


def test_disk_cache_is_written_once_under_the_cache_folder_only(data, tmp_path, monkeypatch):
    root, split = data
    monkeypatch.setenv("DISTXFER_CACHE", str(tmp_path / "home-cache"))
    before = sorted(os.listdir(root / "a"))
    clear_loaded()
    run(split, training=False, cache="disk")
    files = os.listdir(tmp_path / "home-cache" / "images")
    assert len(files) == 1 and files[0].endswith("-4x4x3.npy")
    mtime = os.stat(tmp_path / "home-cache" / "images" / files[0]).st_mtime_ns
    clear_loaded()
    run(split, training=False, cache="disk")
    assert os.listdir(tmp_path / "home-cache" / "images") == files
    assert os.stat(tmp_path / "home-cache" / "images" / files[0]).st_mtime_ns == mtime
    assert sorted(os.listdir(root / "a")) == before


def test_changing_a_file_builds_a_new_cache(data, tmp_path):
    root, _ = data
    cache_dir = tmp_path / "cache"
    clear_loaded()
    run(
        load_splits(DataConfig(train_dir=str(root)), seed=0).train,
        training=False,
        cache="disk",
        cache_dir=str(cache_dir),
    )
    path = root / "b" / "img0001.png"
    write(path, encode(noise(6, 6, seed=99), "PNG"))
    os.utime(path, ns=(1, 1))
    changed = load_splits(DataConfig(train_dir=str(root)), seed=0).train
    new = {
        i: img
        for i, _, img in entries(
            run(changed, training=False, cache="disk", cache_dir=str(cache_dir))[0]
        )
    }
    assert len(os.listdir(cache_dir)) == 2
    fresh = {i: img for i, _, img in entries(run(changed, training=False)[0])}
    assert all(np.array_equal(new[i], fresh[i]) for i in fresh)


def test_device_augmentation_trains_on_the_pixels_host_augmentation_makes(data):
    import keras

    from distxfer.config.schema import ModelConfig
    from distxfer.data.augment import augment_on_device
    from distxfer.engines.detect import Launch
    from distxfer.engines.single import SingleEngine
    from distxfer.models import build_model
    from distxfer.train.steps import TrainStep

    _, split = data
    host, _, _ = run(split, batch=4, size=8)
    device, _, _ = run(split, batch=4, size=8, augment_on="device")
    assert "augment" not in host[0] and device[0]["augment"].shape == (4, 9)
    weights = []
    for batches, augment in ((host, None), (device, augment_on_device(AUG))):
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(backbone="mlp", weights=None), 3, (8, 8), 3)
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
        engine = SingleEngine(Launch("none"))
        step = TrainStep(model, optimizer, engine, global_batch=4, num_classes=3, augment=augment)
        step.run(iter(tf.data.Dataset.from_tensor_slices(stack(batches))), len(batches))
        weights.append([v.numpy() for v in model.trainable_variables])
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    pixels = augment_on_device(AUG)(device[0]["image"], device[0]["augment"]).numpy()
    assert np.array_equal(pixels, host[0]["image"])


def stack(batches):
    """Batches as one dataset's elements."""
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
