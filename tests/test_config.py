"""Config: YAML and dotted overrides become a typed Config; bad input names the key."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
import yaml

from distxfer.config import (
    Config,
    TrainableSpec,
    config_differences,
    config_to_dict,
    dump_config,
    load_config,
)
from distxfer.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_values_become_typed_fields(tmp_path):
    path = write(
        tmp_path,
        "seed: 3\ndata:\n  batch_size: 16\n  image_size: [96, 128]\nphases:\n"
        "  - {name: head, epochs: 2}\n  - {name: tune, trainable: 'top:10', learning_rate: 1e-5}\n",
    )
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.seed == 3 and config.data.batch_size == 16 and config.data.image_size == [96, 128]
    assert [p.name for p in config.phases] == ["head", "tune"]
    assert config.phases[1].trainable_spec == TrainableSpec("top", count=10)
    assert config.phases[1].learning_rate == pytest.approx(1e-5)


def test_dotted_overrides_reach_nested_keys_and_list_items(tmp_path):
    path = write(tmp_path, "phases:\n  - {name: head}\n  - {name: finetune}\n")
    config = load_config(
        path,
        [
            "data.batch_size=64",
            "phases.1.epochs=3",
            "phases.head.learning_rate=0.01",
            "model.backbone_args={alpha: 0.35}",
            "data.augment.zoom=[0.9, 1.2]",
        ],
    )
    assert config.data.batch_size == 64
    assert config.phases[1].epochs == 3
    assert config.phases[0].learning_rate == 0.01
    assert config.model.backbone_args == {"alpha": 0.35}
    assert config.data.augment.zoom_range() == (0.9, 1.2)


def test_list_items_may_be_addressed_with_brackets(tmp_path):
    path = write(tmp_path, "phases:\n  - {name: head}\n  - {name: finetune}\n")
    config = load_config(path, ["phases[1].epochs=3", "phases[head].learning_rate=0.01"])
    assert config.phases[1].epochs == 3
    assert config.phases[0].learning_rate == 0.01


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_sise=3", "data.batch_sise: unknown key (did you mean 'batch_size'?)"),
        ("dta.batch_size=3", "dta: unknown key (did you mean 'data'?)"),
        ("data.batch_size=abc", "data.batch_size: expected an integer, got str 'abc'"),
        ("data.batch_size=0", "data.batch_size: must be at least 1"),
        ("engine.name=horovd", "(did you mean 'horovod'?)"),
        ("phases.3.epochs=2", "phases.3: index 3 is out of range"),
        ("phases.0.trainable=top:x", "phases.0.trainable: 'top:x' is not one of"),
        ("data.val_split=1.5", "data.val_split: must be a fraction in [0, 1)"),
        ("xla=maybe", "xla: expected true/false, got str 'maybe'"),
        ("data.augment_on=gpu", "data.augment_on: 'gpu' is not one of host, device"),
        ("data.feature_cache=maybe", "data.feature_cache: expected true/false, got str 'maybe'"),
        ("data.scan_cache=3", "data.scan_cache: expected true/false, got int 3"),
        ("nonfinite_loss=ignore", "nonfinite_loss: 'ignore' is not one of"),
        ("nonfinite_skip_limit=-1", "nonfinite_skip_limit: must be 0 or more"),
        (
            "engine.collective_timeout_seconds=1",
            "engine.collective_timeout_seconds: must be 0 (wait forever) or at least 5 seconds",
        ),
        ("output.checkpoint_every_steps=5", None),
    ],
)
def test_bad_values_name_the_key(override, message):
    overrides = [override] + (["steps_per_execution=2"] if message is None else [])
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    expected = (
        message or "output.checkpoint_every_steps: must be a multiple of steps_per_execution (2)"
    )
    assert expected in str(info.value)


def test_unknown_key_in_yaml_file_is_reported_with_its_path(tmp_path):
    path = write(tmp_path, "model:\n  head:\n    droput: 0.2\n")
    with pytest.raises(
        ConfigError, match=r"model\.head\.droput: unknown key \(did you mean 'dropout'\?\)"
    ):
        load_config(path)


def test_missing_and_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 3: expected ',' or ']'"):
        load_config(write(tmp_path, "a: 1\nb: [1, 2\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["data.batch_size"])


def test_weights_none_string_means_random_init():
    assert load_config(None, ["model.weights=none"]).model.weights is None
    assert load_config(None, ["model.weights=null"]).model.weights is None


def test_phases_without_names_are_numbered():
    config = load_config(None, ["phases=[{epochs: 1}, {epochs: 2}]"])
    assert [p.name for p in config.phases] == ["phase1", "phase2"]


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config(
        None, ["data.batch_size=8", "phases=[{name: a}, {name: b, trainable: all}]"]
    )
    path = write(tmp_path, dump_config(config))
    again = load_config(path)
    assert config_to_dict(again) == config_to_dict(config)
    assert yaml.safe_load(path.read_text())["data"]["batch_size"] == 8


def test_config_differences_lists_dotted_keys():
    a = config_to_dict(load_config(None, []))
    b = config_to_dict(load_config(None, ["data.batch_size=8", "phases.0.epochs=4"]))
    assert config_differences(a, b) == ["data.batch_size", "phases.0.epochs"]


def test_a_null_image_size_becomes_the_backbones_native_size():
    assert load_config(None, ["model.backbone=InceptionV3"]).data.image_size == [299, 299]
    assert load_config(None, ["data.image_size=[96, 128]"]).data.image_size == [96, 128]


def test_a_model_without_a_native_size_needs_an_image_size():
    with pytest.raises(ConfigError, match="data.image_size: the mlp model has no native size"):
        load_config(None, ["model.backbone=mlp"])


def test_an_unknown_backbone_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="unknown backbone 'ResNet5O'; did you mean ResNet50"):
        load_config(None, ["model.backbone=ResNet5O", "data.image_size=[64, 64]"])


def test_weights_spelled_imagenet_in_any_case_mean_imagenet():
    assert load_config(None, ["model.weights=ImageNet"]).model.weights == "imagenet"


def test_checking_a_loaded_config_changes_nothing():
    config = load_config(None, ["phases=[{epochs: 1}, {trainable: 'top:3'}]"])
    before = config_to_dict(config)
    config.check()
    assert config_to_dict(config) == before


def test_trainable_is_parsed_once_and_kept():
    phase = load_config(None, ["phases=[{trainable: 'from:block5_conv1'}]"]).phases[0]
    assert phase.trainable_spec == TrainableSpec("from", layer="block5_conv1")
    assert phase.trainable_spec is phase.trainable_spec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.global_batch=12", "data.batch_size=8"], "data.global_batch: must be a positive"),
        (["data.class_weight=inverse"], "data.class_weight: 'inverse' is not balanced"),
        (["data.class_weight={cat: -1}"], "data.class_weight.cat: must be a number 0 or more"),
        (["data.class_weight={}"], "data.class_weight: the mapping is empty"),
        (
            ["phases=[{early_stopping: {metric: val_f1}}]"],
            "phases.0.early_stopping.metric: 'val_f1'",
        ),
        (["phases=[{early_stopping: {patience: 0}}]"], "phases.0.early_stopping.patience: must be"),
        (["model.backbone_layer=conv1"], "model.backbone_layer: only applies to a .keras backbone"),
        (
            ["model.backbone=team.keras", "data.image_size=[32, 32]"],
            "model.backbone_layer: a .keras",
        ),
    ],
)
def test_new_keys_name_themselves_when_their_values_cannot_work(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, ["data.val_split=0.2", *overrides])


def test_early_stopping_on_a_validation_metric_needs_validation_data():
    with pytest.raises(ConfigError, match="phases.0.early_stopping.metric: val_loss needs valid"):
        load_config(None, ["phases=[{early_stopping: {metric: val_loss}}]"])
    config = load_config(None, ["phases=[{early_stopping: {metric: loss}}]"])
    assert config.phases[0].early_stopping.patience == 3  # the documented defaults
    assert config.phases[0].early_stopping.restore_best


def test_a_keras_file_backbone_keeps_its_own_weights_not_imagenet():
    with pytest.raises(ConfigError, match="model.weights: imagenet does not apply to a .keras"):
        load_config(
            None, ["model.backbone=team.keras", "model.backbone_layer=x", "data.image_size=[8, 8]"]
        )


def test_a_keras_file_backbone_gives_its_fixed_input_size_without_loading_keras(tmp_path):
    path = keras_file(tmp_path / "team.keras", [None, 40, 48, 3])
    config = load_config(
        None, [f"model.backbone={path}", "model.backbone_layer=conv", "model.weights=null"]
    )
    assert config.data.image_size == [40, 48]
    any_size = keras_file(tmp_path / "any.keras", [None, None, None, 3])
    with pytest.raises(ConfigError, match=r"data.image_size: the .keras backbone .* takes any"):
        load_config(
            None, [f"model.backbone={any_size}", "model.backbone_layer=conv", "model.weights=null"]
        )


def keras_file(path, batch_shape) -> str:
    """A file laid out as Keras 3 saves a model: a zip whose config.json describes it."""
    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {
                    "class_name": "InputLayer",
                    "name": "input",
                    "config": {"batch_shape": batch_shape},
                },
                {"class_name": "Conv2D", "name": "conv", "config": {"name": "conv"}},
            ]
        },
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return str(path)
