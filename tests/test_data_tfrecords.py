"""Converting class folders to TFRecords and training from them through the same pipeline API."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from imagefiles import class_tree, write

tf = pytest.importorskip("tensorflow")

from distxfer.config.schema import AugmentConfig, DataConfig  # noqa: E402
from distxfer.data.layout import Batching  # noqa: E402
from distxfer.data.load import load_splits  # noqa: E402
from distxfer.data.pipeline import eval_dataset, train_dataset  # noqa: E402
from distxfer.data.splits import RecordSplit  # noqa: E402
from distxfer.data.tfrecords import convert_to_tfrecords, parse_record, read_records  # noqa: E402
from distxfer.errors import DataError  # noqa: E402


@pytest.fixture
def converted(tmp_path):
    """17 images in 3 classes; 20% of each class (3 images) held out; up to 4 shards a split."""
    src, out = tmp_path / "src", tmp_path / "records"
    class_tree(src, {"a": 7, "b": 5, "c": 5}, size=6)
    meta = convert_to_tfrecords(str(src), str(out), shards=4, val_split=0.2, seed=1)
    return src, out, meta


def stored(split: RecordSplit) -> dict[int, int]:
    """id -> label of every record of a split."""
    records = read_records(split.files).map(parse_record)
    return {int(r["id"]): int(r["label"]) for r in records.as_numpy_iterator()}


def run(split, *, training, pipeline=0, pipelines=1, batch=2, start_step=0, epoch=0):
    cfg = DataConfig(image_size=[4, 4], augment=AugmentConfig(horizontal_flip=True))
    batching = Batching(batch, 1, pipelines, pipeline)
    if training:
        ds, steps = train_dataset(
            split, batching, cfg=cfg, seed=0, epoch=epoch, start_step=start_step
        )
    else:
        ds, steps = eval_dataset(split, batching, cfg=cfg)
    return list(ds.as_numpy_iterator()), steps


def test_meta_json_records_classes_splits_and_file_counts(converted):
    _, out, meta = converted
    with open(out / "meta.json") as f:
        on_disk = json.load(f)
    assert on_disk["class_names"] == ["a", "b", "c"] == meta["class_names"]
    assert {name: s["count"] for name, s in on_disk["splits"].items()} == {"train": 14, "val": 3}
    assert [len(s["files"]) for s in on_disk["splits"].values()] == [4, 3]  # no empty files
    for split in on_disk["splits"].values():
        assert sum(f["count"] for f in split["files"]) == split["count"]
        assert all(os.path.isfile(out / f["name"]) for f in split["files"])
    assert not [n for n in os.listdir(out) if ".tmp" in n]


def test_records_hold_the_same_ids_and_labels_as_the_folder_split(converted):
    src, out, _ = converted
    folder = load_splits(DataConfig(train_dir=str(src), val_split=0.2), seed=1)
    records = load_splits(DataConfig(train_dir=str(out)), seed=1)
    assert isinstance(records.train, RecordSplit) and records.class_names == folder.class_names
    for name in ("train", "val"):
        labels = getattr(folder, name).labels
        assert stored(getattr(records, name)) == {i: int(label) for i, label in enumerate(labels)}


def test_shards_mix_the_classes(tmp_path):
    src = tmp_path / "src"
    class_tree(src, {"a": 20, "b": 20}, size=4)
    meta = convert_to_tfrecords(str(src), str(tmp_path / "out"), shards=2)
    split = RecordSplit(
        "train",
        tuple(str(tmp_path / "out" / f["name"]) for f in meta["splits"]["train"]["files"]),
        (20, 20),
    )
    for path in split.files:
        assert set(stored(RecordSplit("x", (path,), (20,))).values()) == {0, 1}


def test_training_from_records_reads_every_sample_once_across_two_pipelines(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train
    seen, steps_seen = Counter(), set()
    for p in range(2):
        batches, steps = run(split, training=True, pipeline=p, pipelines=2)
        steps_seen.add(steps)
        assert len(batches) == steps
        for b in batches:
            seen.update(b["id"][b["weight"] > 0].tolist())
    assert len(steps_seen) == 1
    assert sorted(seen) == list(range(14)) and set(seen.values()) == {1}


def test_epoch_steps_predicts_the_steps_of_every_record_epoch(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train
    for epoch in range(4):
        predicted = split.epoch_steps(Batching(2, 1, 2), seed=0, epoch=epoch, shuffle=True)
        assert predicted == run(split, training=True, pipelines=2, epoch=epoch)[1]


def test_record_training_weighs_every_global_step_as_a_full_batch(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train
    per_step = None
    for p in range(2):
        weights = np.array(
            [b["weight"].sum() for b in run(split, training=True, pipeline=p, pipelines=2)[0]]
        )
        per_step = weights if per_step is None else per_step + weights
    np.testing.assert_allclose(per_step, 4.0, rtol=1e-6)


def test_evaluating_records_counts_exactly_with_more_pipelines_than_files(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).val  # 3 samples in 3 files
    seen = Counter()
    for p in range(5):
        batches, _ = run(split, training=False, pipeline=p, pipelines=5, batch=1)
        for b in batches:
            assert set(b["weight"].tolist()) <= {0.0, 1.0}
            seen.update(b["id"][b["weight"] == 1].tolist())
    assert sorted(seen) == list(range(3)) and set(seen.values()) == {1}


def test_resuming_record_training_gives_the_rest_of_the_epoch(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train
    full, steps = run(split, training=True, epoch=2)
    rest, rest_steps = run(split, training=True, epoch=2, start_step=3)
    assert rest_steps == steps - 3 and len(rest) == len(full) - 3
    for a, b in zip(full[3:], rest, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_record_order_is_the_same_for_a_seed_and_epoch_and_changes_with_the_epoch(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train

    def order(epoch):
        return [i for b in run(split, training=True, epoch=epoch)[0] for i in b["id"].tolist()]

    assert order(0) == order(0)
    assert order(0) != order(1)


def test_records_decode_to_the_same_images_as_the_folder(converted):
    src, out, _ = converted
    folder = load_splits(DataConfig(train_dir=str(src), val_split=0.2), seed=1).val
    records = load_splits(DataConfig(train_dir=str(out)), seed=1).val
    by_id = [
        {
            int(i): img
            for b in run(s, training=False)[0]
            for i, img in zip(b["id"], b["image"], strict=True)
        }
        for s in (folder, records)
    ]
    assert sorted(by_id[0]) == sorted(by_id[1])
    assert all(np.array_equal(by_id[0][i], by_id[1][i]) for i in by_id[0])


def test_too_few_record_files_for_the_training_workers_is_an_error(converted):
    _, out, _ = converted
    split = load_splits(DataConfig(train_dir=str(out)), seed=0).train
    with pytest.raises(DataError, match="re-convert with --shards 5 or more"):
        run(split, training=True, pipeline=0, pipelines=5)


def test_the_trainer_refuses_too_few_record_files_before_building_the_model(
    converted, tmp_path, monkeypatch
):
    from distxfer.config import load_config
    from distxfer.engines.base import Engine
    from distxfer.engines.detect import Launch
    from distxfer.train import loop

    _, out, _ = converted
    config = load_config(
        None, [f"data.train_dir={out}", "data.image_size=[8,8]", "model.backbone=mlp"]
    )
    splits = load_splits(config.data, seed=0)

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(loop, "build_model", no_build)
    with pytest.raises(DataError, match="re-convert with --shards 5 or more"):
        loop.Trainer(config, Engine(Launch("mpirun", size=5)), splits, tmp_path / "run")


def test_converting_into_a_converted_folder_is_refused(converted):
    src, out, _ = converted
    with pytest.raises(DataError, match="already holds converted records"):
        convert_to_tfrecords(str(src), str(out), shards=2)


def test_bad_files_are_left_out_of_the_records_when_skipped(tmp_path):
    paths = class_tree(tmp_path / "src", {"a": 3, "b": 3}, size=4)
    write(paths[2], b"")
    meta = convert_to_tfrecords(
        str(tmp_path / "src"), str(tmp_path / "out"), shards=2, bad_files="skip"
    )
    assert meta["splits"]["train"]["count"] == 5
    assert [p for p, _ in meta["skipped"]] == [paths[2]]


def test_val_split_on_records_without_a_validation_split_is_an_error(tmp_path):
    class_tree(tmp_path / "src", {"a": 3, "b": 3}, size=4)
    convert_to_tfrecords(str(tmp_path / "src"), str(tmp_path / "out"), shards=2)
    with pytest.raises(DataError, match="re-convert with --val-split"):
        load_splits(DataConfig(train_dir=str(tmp_path / "out"), val_split=0.2), seed=0)


def test_record_splits_know_their_class_counts_for_balanced_weights(converted):
    _, out, _ = converted
    cfg = DataConfig(train_dir=str(out), class_weight="balanced", image_size=[4, 4])
    splits = load_splits(cfg, seed=0)
    counts = splits.train.class_counts(3)
    assert list(counts) == [6, 4, 4]  # 7, 5 and 5 images, 20% of each held out
    assert splits.class_weights == pytest.approx(tuple(14 / (3 * c) for c in counts))
