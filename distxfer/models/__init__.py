"""The model layer: backbones by name, in-model preprocessing, the classifier, phases, weights.

    backbones.py        the table of backbones (pure Python: safe to import before TensorFlow)
    preprocess.py       each backbone's preprocess_input as built-in Keras layers
    pretrained.py       where a backbone's weights come from (ImageNet, a file, a run), checked
                        before TensorFlow (pure Python, like backbones.py and kerasfile.py)
    kerasfile.py        a .keras file's architecture read as JSON: layers, input size, Lambdas
    filebackbone.py     a team's .keras model as the backbone, cut at model.backbone_layer
    weights.py          backbones with ImageNet / random / file / run weights; saving, prefetching
    build.py            build_model, backbone_of, feature_model, probability_model,
                        leaf_layers, batchnorm_statistics
    phases.py           apply_phase: which layers learn in a phase; check_phases: all of them
    safe_load.py        load_keras_model: .keras files in Keras's safe mode unless trusted
    keras_internals.py  the only use of private Keras API, each checked by a test

Only the backbone table is imported eagerly; the rest loads Keras on first use, so
`from distxfer.models import resolve_backbone` stays TensorFlow-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from distxfer.models.backbones import BackboneSpec, backbone_names, resolve_backbone

_LAZY = {
    "build_model": "build",
    "backbone_of": "build",
    "feature_model": "build",
    "probability_model": "build",
    "leaf_layers": "build",
    "batchnorm_statistics": "build",
    "apply_phase": "phases",
    "check_phases": "phases",
    "TrainableSummary": "phases",
    "save_backbone_weights": "weights",
    "prefetch_weights": "weights",
    "keras_cache_dir": "weights",
}

__all__ = ["BackboneSpec", "backbone_names", "resolve_backbone", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"distxfer.models.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'distxfer.models' has no attribute {name!r}")
