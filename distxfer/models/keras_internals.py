"""Every use of private Keras API (`keras.src...`, underscore attributes) in distxfer.

Each one names the Keras releases it was checked on and the test that fails if Keras changes
it. The release ranges come from reading each release tag's source; 3.15.1 is the one tested.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import keras


def receives_training(layer: keras.Layer) -> bool | None:
    """Whether `layer` is handed the `training` value of the call it runs in (a Functional
    model's call included); None if this Keras keeps no record of that."""
    # Private: Layer._call_context_args, the call-context arguments a layer receives. A set on
    # every Layer from Keras 3.10.0 to 3.15.1 (absent in 3.0-3.9). Fails if Keras changes it:
    #   test_models_build.py::test_batchnorm_frozen_tells_which_mode_the_model_was_built_in
    #   test_models_keras_internals.py::test_a_layer_stops_receiving_training_once_told_to
    context_args = getattr(layer, "_call_context_args", None)
    return None if context_args is None else "training" in context_args


def stop_passing_training(layer: keras.Layer) -> None:
    """Stop outer calls handing `layer` their `training` value; needs `receives_training`."""
    # Private: the same attribute, which Functional's operation_fn and Layer.__call__ consult
    # (Keras 3.10.0 to 3.15.1). Fails if Keras stops honouring it:
    #   test_models_build.py::test_frozen_batchnorm_keeps_moving_mean_in_a_training_forward_pass
    #   test_models_build.py::test_frozen_batchnorm_makes_training_output_equal_inference_output
    layer._call_context_args = set(layer._call_context_args) - {"training"}


def keras_home() -> Path:
    """KERAS_HOME as Keras resolved it at import (its download cache is the `models/` in it)."""
    # Private: keras.src.backend.config.keras_home(), in Keras 3.0.0 to 3.15.1. Fails if it goes,
    # in test_models_build.py:
    #   test_imagenet_weights_without_internet_is_a_config_error_naming_the_cache
    try:
        from keras.src.backend.config import keras_home as home
    except ImportError:  # private accessor gone: fall back to Keras's documented rule
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return Path(home())


@contextlib.contextmanager
def keras_home_set_to(path: Path) -> Iterator[None]:
    """Make Keras download into (and read its cache from) `path` for the duration."""
    # Private: keras.src.backend.config._KERAS_DIR, which keras_home() and so get_file read on
    # each call, in Keras 3.0.0 to 3.15.1. Fails if Keras changes it:
    #   test_models_keras_internals.py::test_keras_home_set_to_makes_keras_download_into_that_home
    #   test_models_weights.py::test_prefetch_names_the_file_it_fetched_into_keras_home (slow)
    from keras.src.backend import config

    saved = config._KERAS_DIR
    config._KERAS_DIR = str(path)
    try:
        yield
    finally:
        config._KERAS_DIR = saved


@contextlib.contextmanager
def fresh_layer_names() -> Iterator[None]:
    """Build with Keras's auto-naming counters reset, so auto-named layers ("activation_3")
    get the same names in every process whatever was built before (`from:LAYER` relies on it)."""
    # Private: keras.src.backend.common.global_state's "object_name_uids", the counters that
    # keras.src.utils.naming numbers layers with, in Keras 3.0.0 to 3.15.1. Fails if it changes:
    #   test_models_build.py::test_backbone_layer_names_do_not_depend_on_what_was_built_before
    #   test_models_keras_internals.py::test_fresh_layer_names_start_auto_names_from_scratch
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # private module moved: names stay correct, only less reproducible
        yield
        return
    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", None)
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def output_where_called(layer: keras.Layer) -> keras.KerasTensor:
    """The output of `layer` in the graph that first called it, also for a nested model (whose
    own `output` is the output of its inner graph instead)."""
    # Not private, but around an override: keras.Operation.output (the output of the first
    # call, in Keras 3.0.0 to 3.15.1), which Functional shadows with its inner graph's outputs.
    # Fails if Keras changes it:
    #   test_models_keras_internals.py::test_output_where_called_is_the_outer_graphs_tensor
    #   test_export.py::test_backbone_export_serves_features_and_transfers_as_file_or_weights
    return keras.Operation.output.fget(layer)
