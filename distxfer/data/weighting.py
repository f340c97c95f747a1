"""Per-class loss weights (`data.class_weight`), from the config and the training split's counts.

`balanced` gives class c the weight n / (k * n_c), with n training samples in k classes and n_c
in class c (scikit-learn's `compute_class_weight("balanced")`, the weighting Keras's
imbalanced-data guide uses): a rare class weighs more, and the weighted mean over the training
set stays 1, so the learning rate keeps its meaning. A mapping names classes by their folder
names; a class it leaves out weighs 1. Plain Python and numpy, run before the engine starts.
"""

from __future__ import annotations

import difflib

import numpy as np

from distxfer.errors import ConfigError, DataError


def class_weights(
    spec: str | dict[str, float] | None, class_names: tuple[str, ...], counts: np.ndarray
) -> tuple[float, ...] | None:
    """One loss weight per class (in class order), or None when `data.class_weight` is null."""
    if spec is None:
        return None
    if spec == "balanced":
        if np.any(counts <= 0):
            missing = [class_names[i] for i in np.flatnonzero(counts <= 0)]
            raise DataError(
                f"data.class_weight: balanced needs the training count of every class, and"
                f" {', '.join(missing)} has none (TFRecords converted by an older distxfer do not"
                " record them: re-convert, or give a mapping {class_name: weight})"
            )
        total, k = float(counts.sum()), len(class_names)
        return tuple(float(total / (k * c)) for c in counts)
    assert isinstance(spec, dict), "schema.check lets only balanced, a mapping or null through"
    for name in spec:
        if name not in class_names:
            close = difflib.get_close_matches(str(name), class_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"data.class_weight.{name}: no such class{hint}; the classes are"
                f" {', '.join(class_names)}"
            )
    return tuple(float(spec.get(name, 1.0)) for name in class_names)


def describe_class_weights(weights: tuple[float, ...], class_names: tuple[str, ...]) -> str:
    """`name=weight` pairs for the log."""
    return ", ".join(f"{name}={w:.3g}" for name, w in zip(class_names, weights))
