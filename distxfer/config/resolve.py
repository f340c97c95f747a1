"""The one normalisation step of a loaded config: values that follow from other keys.

`load_config` runs it between typing and checking, so everything after sees final values:
unnamed phases get `phase1`, `phase2`, ...; `model.weights` spelled `none` (YAML reads it as a
string) or `ImageNet` becomes None or `imagenet`; a null `data.image_size` becomes the
backbone's native size: from the backbone table, or for a `.keras` backbone the fixed input size
in the file's `config.json` (read as JSON, without loading the model). Pure Python: neither the
backbone table nor the file reader imports TensorFlow.
"""

from __future__ import annotations

from distxfer.config.schema import Config
from distxfer.errors import ConfigError
from distxfer.models.backbones import resolve_backbone
from distxfer.models.kerasfile import read_keras_file


def resolve(config: Config) -> Config:
    """Fill in `config` in place and return it."""
    for index, phase in enumerate(config.phases):
        if not phase.name:
            phase.name = f"phase{index + 1}"
    model = config.model
    if model.weights is not None and model.weights.strip().lower() in ("none", ""):
        model.weights = None
    elif model.weights is not None and model.weights.strip().lower() == "imagenet":
        model.weights = "imagenet"
    if not model.backbone.strip():
        return config  # check() names the key
    spec = resolve_backbone(model.backbone)  # an unknown name stops here, with a did-you-mean
    if config.data.image_size is None and spec.path is not None:
        size = read_keras_file(spec.path).image_size
        if size is None:
            raise ConfigError(
                f"data.image_size: the .keras backbone {spec.path} takes any image size; set"
                " [height, width]"
            )
        config.data.image_size = list(size)
    elif config.data.image_size is None:
        if spec.default_size is None:
            raise ConfigError(
                f"data.image_size: the {spec.name} model has no native size; set [height, width]"
            )
        config.data.image_size = [spec.default_size, spec.default_size]
    return config
