"""Errors a user can act on.

Every problem caused by input (a config key, a path, an image, a flag, the environment) is raised
as a `DistxferError` whose message names the thing and says what to do. The CLI prints such an
error as one line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DistxferError(Exception):
    """A problem with the user's input or environment, reported as one actionable line."""


class ConfigError(DistxferError):
    """A config key that is unknown, of the wrong type, or holds an impossible value."""


class DataError(DistxferError):
    """A dataset that cannot be trained on: missing folder, empty class, unreadable images."""


class EngineError(DistxferError):
    """A distributed engine that cannot start in this environment."""


class CheckpointError(DistxferError):
    """A run directory or checkpoint that cannot be resumed from."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, to quote in an error."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
