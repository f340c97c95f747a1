"""Typed run configuration.

`schema` holds the dataclasses and their checks (`data` its data section, `checks` the way a
check fails), `loader` turns YAML and dotted overrides into them, `resolve` fills in what
follows from other keys; `load_config` does all three, once.
"""

from distxfer.config.loader import config_differences, config_to_dict, dump_config, load_config
from distxfer.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    EngineConfig,
    HeadConfig,
    ModelConfig,
    OutputConfig,
    PhaseConfig,
    TrainableSpec,
)

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "EngineConfig",
    "HeadConfig",
    "ModelConfig",
    "OutputConfig",
    "PhaseConfig",
    "TrainableSpec",
    "config_differences",
    "config_to_dict",
    "dump_config",
    "load_config",
]
