"""Typed run configuration: the dataclasses (`schema`) and how YAML and overrides become them (`loader`)."""

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
    "config_differences",
    "config_to_dict",
    "dump_config",
    "load_config",
]
