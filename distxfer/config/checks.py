"""The one way a config check fails: a ConfigError naming the key."""

from __future__ import annotations

from distxfer.errors import ConfigError


def require(ok: bool, key: str, message: str) -> None:
    """Raise `ConfigError("KEY: MESSAGE")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
