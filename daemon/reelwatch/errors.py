"""Exceptions raised by the daemon, each with the JSON-RPC error code it maps to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "ConfigError",
    "ControlSocketError",
    "DaemonError",
    "InvalidParamsError",
    "NotFoundError",
    "PathNotAllowedError",
    "PermissionDeniedError",
    "StorageError",
    "single_error",
]


class DaemonError(Exception):
    """Base class of every error the daemon raises on purpose.

    ``code`` is the JSON-RPC error code a client receives for it.
    """

    code: int = -32603


class ConfigError(DaemonError):
    """Raised when the configuration file or an environment override is invalid.

    The message names the file, the key, what was found and what was expected.
    """


class ControlSocketError(DaemonError):
    """Raised when the control socket cannot be set up.

    For example: another daemon already listens on the path, the path exists
    but is not a socket, or it is longer than a Unix socket address allows.
    """


class InvalidParamsError(DaemonError):
    """Raised when a request's parameters have the right types but invalid values."""

    code = -32602


class PathNotAllowedError(DaemonError):
    """Raised when a requested path is not inside any allowed scan root."""

    code = -32001


class NotFoundError(DaemonError):
    """Raised when a job, video or root that a request names does not exist."""

    code = -32002


class PermissionDeniedError(DaemonError):
    """Raised when the connected peer may not call the requested method."""

    code = -32003


class StorageError(DaemonError):
    """Raised when the catalog database cannot be read or written."""

    code = -32010


@contextlib.contextmanager
def single_error() -> Iterator[None]:
    """Re-raise the only exception of an exception group as itself.

    Callers of a function that runs steps in a task group expect the error
    of the step that failed (a StorageError, an OSError), not a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
