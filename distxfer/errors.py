"""Errors a user can act on, and the exit status each one gives.

Every problem caused by input (a config key, a path, an image, a flag, the environment) is raised
as a `DistxferError` whose message names the thing and says what to do. The CLI prints such an
error as one line (`distxfer: error: ...`), then any `details` lines under it, and exits with the
error's `exit_code`: 2 for bad input, distinct codes for a run that stopped on a fault (see
README "When things fail"). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_USAGE = 2  # bad input: a config key, a file, a flag; nothing was trained
EXIT_DIVERGED = 65  # the loss became NaN or infinite (EX_DATAERR); the last good checkpoint kept
EXIT_PEER_LOST = (
    69  # a rank died or stopped answering (EX_UNAVAILABLE); resume with the same command
)
EXIT_WRITE_FAILED = 74  # a checkpoint could not be written (EX_IOERR); the previous one is intact


class DistxferError(Exception):
    """A problem with the user's input or environment, reported as one actionable line."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)  # printed after the message, one per line


class ConfigError(DistxferError):
    """A config key that is unknown, of the wrong type, or holds an impossible value."""


class DataError(DistxferError):
    """A dataset that cannot be trained on: missing folder, empty class, unreadable images."""


class EngineError(DistxferError):
    """A distributed engine that cannot start in this environment."""


class CheckpointError(DistxferError):
    """A run directory or checkpoint that cannot be resumed from."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, read-only); every rank stops alike."""

    exit_code = EXIT_WRITE_FAILED


class TrainingDiverged(DistxferError):
    """The loss became NaN or infinite; every rank stops at the same step."""

    exit_code = EXIT_DIVERGED


class PeerLost(EngineError):
    """Another rank died or stopped answering; this one cannot go on."""

    exit_code = EXIT_PEER_LOST


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, to quote in an error."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
