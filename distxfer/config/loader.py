"""YAML -> typed `Config`, with dotted command-line overrides, checked once.

    config = load_config("configs/resnet50.yaml", ["data.batch_size=64", "phases.1.epochs=3"])

An override's value is parsed as YAML (`3` is an int, `[224, 224]` a list, `null` None) and then
typed like any key in the file. List items are addressed by index from 0, and phases also by
name (`phases.finetune.epochs=3`). Unknown keys, wrong types and impossible values raise
`ConfigError` naming the key, with a did-you-mean where a close key exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from distxfer.config.resolve import resolve
from distxfer.config.schema import Config
from distxfer.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML file (or start from defaults), apply overrides, type, resolve, check."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
    for item in overrides:
        apply_override(raw, item)
    config = resolve(from_dict(Config, raw, ""))
    config.check()
    return config


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file with -c")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not a {type(data).__name__}"
        )
    return data


_LIST_ITEM = re.compile(r"\[([^\[\]]+)\]")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` to the raw (untyped) config mapping."""
    key, sep, text = item.partition("=")
    key = _LIST_ITEM.sub(r".\1", key.strip())  # phases[0].epochs is phases.0.epochs
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {item!r} must look like section.key=value, e.g. data.batch_size=64"
        )
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node: Any = raw
    node_type: Any = Config
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part, here)
            if last:
                node[index] = value
                return
            node, node_type = node[index], _item_type(node_type)
            continue
        field_type = _field_type(node_type, part)
        if dataclasses.is_dataclass(node_type) and field_type is None:
            names = [f.name for f in dataclasses.fields(node_type)]
            raise ConfigError(f"{here}: unknown key{_did_you_mean(part, names)}")
        if last:
            node[part] = value
            return
        child = node.get(part)
        if child is None:
            child = _raw_default(node_type, part)
            node[part] = child
        node, node_type = child, field_type


def _list_index(items: list[Any], part: str, key: str) -> int:
    if part.isdigit():
        if int(part) < len(items):
            return int(part)
        raise ConfigError(f"{key}: index {part} is out of range; the list has {len(items)} items")
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if part in names:
        return names.index(part)
    hint = _did_you_mean(part, [n for n in names if n])
    raise ConfigError(f"{key}: no list item named {part!r}; use an index from 0{hint}")


def _field_type(cls: Any, name: str) -> Any:
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return hints.get(name)
    return None


def _item_type(list_type: Any) -> Any:
    args = typing.get_args(list_type)
    return args[0] if args else None


def _raw_default(owner: Any, name: str) -> Any:
    """The raw (YAML-like) form of a field's default, so an override can reach inside it."""
    if owner is None or not dataclasses.is_dataclass(owner):
        return {}
    return dataclasses.asdict(owner())[name]


def from_dict(cls: Any, data: Any, path: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{_join(path, str(key))}: unknown key{_did_you_mean(str(key), names)}"
            )
    values = {
        name: _convert(hints[name], data[name], _join(path, name)) for name in names if name in data
    }
    return cls(**values)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError as exc:
                errors.append(exc)
        expected = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{key}: expected {expected}, got {_describe(value)}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(str(a) for a in args)
        hint = _did_you_mean(str(value), [str(a) for a in args])
        raise ConfigError(f"{key}: {value!r} is not one of {choices}{hint}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        return dict(value)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_number and isinstance(value, int):
        return value
    if tp is float and is_number:
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is list:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: Config) -> str:
    """The resolved config as YAML, loadable again by `load_config`."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    keys = sorted(set(old) | set(new), key=str)
    diffs: list[str] = []
    for key in keys:
        a, b, here = old.get(key), new.get(key), _join(prefix, str(key))
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, here)
        elif (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(isinstance(x, dict) for x in a + b)
        ):
            for i, (x, y) in enumerate(zip(a, b)):
                diffs += config_differences(x, y, f"{here}.{i}")
        elif a != b:
            diffs.append(here)
    return diffs
