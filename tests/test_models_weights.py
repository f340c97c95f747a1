"""Backbone weights: local files in both formats, saving, misfits, and prefetching offline."""

from __future__ import annotations

from urllib.error import URLError

import h5py
import keras
import numpy as np
import pytest

from distxfer.config.schema import HeadConfig, ModelConfig
from distxfer.errors import ConfigError, DistxferError
from distxfer.models import backbone_of, build_model, prefetch_weights, save_backbone_weights


def model_cfg(backbone: str = "VGG16", weights: str | None = None, **kwargs) -> ModelConfig:
    return ModelConfig(backbone=backbone, weights=weights, **kwargs)


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = [v.numpy() for v in a.weights], [v.numpy() for v in b.weights]
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty Keras cache and a network that cannot reach the weights host."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "default_home"))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ("VGG16", 32),
        ("ResNet50", 32),
        ("InceptionV3", 75),
        ("MobileNetV2", 32),
        ("EfficientNetB0", 32),
        ("DenseNet121", 32),
    ],
)
def test_backbone_saved_from_one_task_loads_into_another(tmp_path, backbone, size):
    source = build_model(model_cfg(backbone), num_classes=5, image_size=(size, size), channels=3)
    path = save_backbone_weights(source, tmp_path / "source.weights.h5")
    cfg = model_cfg(backbone, weights=str(path), head=HeadConfig(hidden_units=8))
    target = build_model(cfg, num_classes=3, image_size=(size + 8, size + 8), channels=3)
    assert_same_weights(backbone_of(source), backbone_of(target))


def test_kerass_own_notop_h5_format_loads(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    notop = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, notop)
    model = build_model(model_cfg("VGG16", weights=str(path)), 3, (48, 48), 3)
    assert_same_weights(notop, backbone_of(model))


def test_missing_weights_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ConfigError, match=rf"^model\.weights: weights file {missing} does not"):
        build_model(model_cfg(weights=str(missing)), 3, (32, 32), 3)


def test_weights_of_another_architecture_are_a_config_error(tmp_path):
    vgg16 = build_model(model_cfg("VGG16"), 3, (32, 32), 3)
    path = save_backbone_weights(vgg16, tmp_path / "vgg16.weights.h5")
    with pytest.raises(ConfigError, match=r"^model\.weights: .*vgg16\.weights\.h5.*VGG19"):
        build_model(model_cfg("VGG19", weights=str(path)), 3, (32, 32), 3)


@pytest.mark.slow
def test_weights_with_other_backbone_args_are_a_config_error(tmp_path):
    small = build_model(model_cfg("MobileNetV2", backbone_args={"alpha": 0.35}), 3, (32, 32), 3)
    path = save_backbone_weights(small, tmp_path / "small.weights.h5")
    with pytest.raises(ConfigError, match=r"^model\.weights: .*does not fit MobileNetV2"):
        build_model(model_cfg("MobileNetV2", weights=str(path)), 3, (32, 32), 3)


def test_settings_keras_refuses_for_imagenet_weights_are_a_config_error(offline):
    cfg = model_cfg("MobileNetV3Small", weights="imagenet", backbone_args={"alpha": 0.5})
    with pytest.raises(ConfigError, match=r"^model: keras\.applications\.MobileNetV3Small refused"):
        build_model(cfg, 3, (32, 32), 3)


def test_a_file_that_is_not_hdf5_is_a_config_error(tmp_path):
    path = tmp_path / "notes.weights.h5"
    path.write_text("not weights")
    with pytest.raises(ConfigError, match=r"^model\.weights: .*notes\.weights\.h5"):
        build_model(model_cfg(weights=str(path)), 3, (32, 32), 3)


def test_save_backbone_weights_needs_the_weights_h5_suffix(tmp_path):
    model = build_model(model_cfg(), 3, (32, 32), 3)
    with pytest.raises(ConfigError, match=r"\.weights\.h5"):
        save_backbone_weights(model, tmp_path / "backbone.h5")
    assert list(tmp_path.iterdir()) == []


def test_save_backbone_weights_leaves_no_temporary_file(tmp_path):
    model = build_model(model_cfg(), 3, (32, 32), 3)
    save_backbone_weights(model, tmp_path / "out" / "backbone.weights.h5")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["backbone.weights.h5"]


def test_mlp_has_no_backbone_weights_to_save(tmp_path):
    mlp = build_model(model_cfg("mlp", head=HeadConfig(hidden_units=4)), 3, (28, 28), 1)
    with pytest.raises(ConfigError, match="mlp"):
        save_backbone_weights(mlp, tmp_path / "mlp.weights.h5")


def test_prefetch_without_internet_fails_with_one_line_naming_the_cache(offline):
    home = offline / "shared_home"
    with pytest.raises(DistxferError, match="needs internet") as err:
        prefetch_weights(["mobilenet_v2"], keras_home=home)
    message = str(err.value)
    assert "\n" not in message
    assert str(home / "models") in message


def test_prefetch_restores_the_keras_cache_location(offline):
    from distxfer.models import keras_cache_dir

    before = keras_cache_dir()
    with pytest.raises(DistxferError):
        prefetch_weights(["MobileNetV2"], keras_home=offline / "shared_home")
    assert keras_cache_dir() == before


def test_prefetch_all_means_every_keras_backbone(offline):
    with pytest.raises(DistxferError, match="for Xception needs internet"):  # first in the table
        prefetch_weights(["all"], keras_home=offline / "home")


def test_prefetch_rejects_unknown_names_before_downloading(offline):
    with pytest.raises(ConfigError, match="did you mean ResNet50"):
        prefetch_weights(["ResNet50", "resnet05"], keras_home=offline / "home")
    assert not (offline / "home").exists()


@pytest.fixture
def fake_download(offline, monkeypatch):
    """A 'network' serving a random MobileNetV2 (alpha 0.35) notop file in Keras's h5 format."""
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    served = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(96, 96, 3), alpha=0.35
    )
    source = offline / "served.h5"
    with h5py.File(source, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, served)

    def download(url, filename, *args, **kwargs):
        filename = str(filename)
        with open(source, "rb") as src, open(filename, "wb") as dst:
            dst.write(src.read())

    monkeypatch.setattr(file_utils, "urlretrieve", download)
    return served


@pytest.mark.slow
def test_prefetch_names_the_file_it_fetched_into_keras_home(offline, fake_download):
    home = offline / "shared_home"
    lines = prefetch_weights(
        ["MobileNetV2"], keras_home=home, backbone_args={"alpha": 0.35}, image_size=(96, 96)
    )
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert lines == [f"MobileNetV2: {name} in {home / 'models'}"]
    assert (home / "models" / name).is_file()


@pytest.mark.slow
def test_a_run_without_internet_uses_prefetched_imagenet_weights(
    offline, fake_download, monkeypatch
):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = offline / "shared_home"
    prefetch_weights(
        ["MobileNetV2"], keras_home=home, backbone_args={"alpha": 0.35}, image_size=(96, 96)
    )
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))  # the compute node's KERAS_HOME
    monkeypatch.setattr(file_utils, "urlretrieve", None)  # any download attempt would fail
    cfg = model_cfg("MobileNetV2", weights="imagenet", backbone_args={"alpha": 0.35})
    model = build_model(cfg, 3, (96, 96), 3)
    assert_same_weights(fake_download, backbone_of(model))
