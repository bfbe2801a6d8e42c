"""Entry point of the ``reelwatch`` command: runs the CLI, maps errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .cli import ExitCode, JobNotCompleted, escape_control, run
from .client import ClientError, DaemonNotRunning, RpcError, SubscriptionDropped
from .errors import ConfigError, DaemonError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reelwatch`` with ``argv`` (default: the process arguments).

    Returns the exit status; see :class:`reelwatch.cli.ExitCode`. Expected
    failures print one line on stderr, never a traceback.
    """
    try:
        return run(argv)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`reelwatch videos | head`); point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.ERROR
    except BaseExceptionGroup as group:
        # Task groups wrap what the daemon raises; report a lone error as is.
        inner = _only_exception(group)
        if inner is None:
            raise
        return _report(inner)
    except Exception as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    code = _exit_code_for(exc)
    if code is None:
        raise exc
    message = str(exc)
    if isinstance(exc, RpcError):
        message = f"{exc.message} (error {exc.code})"
    # Messages can quote file names, which may hold terminal escape sequences.
    sys.stderr.write(f"reelwatch: {escape_control(message)}\n")

    return code


def _exit_code_for(exc: BaseException) -> ExitCode | None:
    if isinstance(exc, DaemonNotRunning):
        return ExitCode.NOT_RUNNING
    if isinstance(exc, RpcError) and exc.reason == "sync_timeout":
        return ExitCode.SYNC_TIMEOUT
    if isinstance(exc, SubscriptionDropped):
        return ExitCode.DROPPED
    if isinstance(exc, ClientError):
        return ExitCode.ERROR
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, JobNotCompleted):
        return ExitCode.JOB_NOT_COMPLETED
    if isinstance(exc, DaemonError):
        return ExitCode.ERROR
    return None


def _only_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


if __name__ == "__main__":
    sys.exit(main())
