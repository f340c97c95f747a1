"""Loading a `.keras` file from elsewhere without running code from it, unless asked.

A `.keras` file can carry Python: a Lambda layer's function, custom objects. Keras's
`safe_mode` (on by default) refuses to deserialize such code; distxfer keeps it on everywhere
and turns the refusal into one line saying what the file holds and how to trust it. Every
`.keras` load in distxfer goes through `load_keras_model`.
"""

from __future__ import annotations

from pathlib import Path

import keras

from distxfer.errors import ConfigError

TRUST_FLAG = "--trust-model-code"


def load_keras_model(path: str | Path, *, trust_code: bool = False) -> keras.Model:
    """The model in `path`; ConfigError if it holds code and `trust_code` is False."""
    try:
        return keras.models.load_model(path, safe_mode=not trust_code)
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        raise ConfigError(
            f"{path} holds a Lambda layer or other Python code, which Keras's safe mode refuses"
            f" to load (it could run anything); pass {TRUST_FLAG} only if you trust the file"
        ) from None
