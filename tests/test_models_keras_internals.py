"""keras_internals: the private Keras API distxfer relies on still does what it is used for."""

from __future__ import annotations

from pathlib import Path

import keras

from distxfer.models import keras_internals


def test_keras_home_set_to_makes_keras_download_into_that_home(tmp_path):
    source = tmp_path / "source.h5"
    source.write_bytes(b"weights")
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    with keras_internals.keras_home_set_to(home):
        fetched = keras.utils.get_file("w.h5", origin=source.as_uri(), cache_subdir="models")
    assert Path(fetched) == home / "models" / "w.h5"


def test_keras_home_set_to_restores_keras_home_afterwards(tmp_path):
    before = keras_internals.keras_home()
    with keras_internals.keras_home_set_to(tmp_path):
        assert keras_internals.keras_home() == tmp_path
    assert keras_internals.keras_home() == before


def test_fresh_layer_names_start_auto_names_from_scratch():
    keras.layers.Activation("relu")  # advances the "activation" counter
    with keras_internals.fresh_layer_names():
        assert keras.layers.Activation("relu").name == "activation"


def test_fresh_layer_names_leave_the_outer_counters_as_they_were():
    keras.layers.Activation("relu")
    following = keras.layers.Activation("relu").name  # e.g. "activation_7"
    with keras_internals.fresh_layer_names():
        keras.layers.Activation("relu")
    number = int(following.rsplit("_", 1)[1])
    assert keras.layers.Activation("relu").name == f"activation_{number + 1}"


def test_a_layer_stops_receiving_training_once_told_to():
    layer = keras.layers.Dense(1)
    assert keras_internals.receives_training(layer) is True
    keras_internals.stop_passing_training(layer)
    assert keras_internals.receives_training(layer) is False


def test_output_where_called_is_the_outer_graphs_tensor():
    inner = keras.Input((8, 8, 3))
    base = keras.Model(inner, keras.layers.Conv2D(2, 3)(inner), name="base")
    image = keras.Input((8, 8, 3))
    outer = keras.Model(image, keras.layers.Flatten()(base(keras.layers.Rescaling(2.0)(image))))
    cut = keras.Model(image, keras_internals.output_where_called(outer.get_layer("base")))
    assert [layer.name for layer in cut.layers][1:] == [outer.layers[1].name, "base"]
