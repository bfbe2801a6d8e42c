"""The ``reelwatch`` command line: run the daemon, or query it over its socket."""

from __future__ import annotations

import argparse
import enum
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TextIO

import anyio
import msgspec
import structlog

from . import __version__
from .client import Client, default_socket_path
from .models import Job, JobState, Status, Video
from .protocol import MAX_PAGE_SIZE, ScanResult

__all__ = [
    "DEFAULT_JOBS_LIMIT",
    "ExitCode",
    "JobNotCompleted",
    "build_parser",
    "resolve_socket_path",
    "run",
]

log = structlog.get_logger(__name__)

DEFAULT_JOBS_LIMIT: Final = 20
# How long the daemon may take to stop after SIGINT or SIGTERM before the
# process exits without waiting further.
DRAIN_TIMEOUT_S: Final = 30.0
_POLL_START_S: Final = 0.1
_POLL_MAX_S: Final = 1.0


class ExitCode(enum.IntEnum):
    """Exit statuses of the ``reelwatch`` command."""

    OK = 0
    ERROR = 1
    """The daemon returned an error, or the connection failed."""
    USAGE = 2
    """The command line or the configuration is invalid."""
    NOT_RUNNING = 3
    """No daemon listens on the socket."""
    JOB_NOT_COMPLETED = 4
    """``scan --wait``: the job failed, timed out or was cancelled, or
    ``--timeout`` passed first."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (128 + SIGINT)."""


class JobNotCompleted(Exception):
    """Raised by ``scan --wait`` when the job does not end in ``complete``."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    # Options shared by all subcommands are accepted before and after the
    # subcommand name; SUPPRESS keeps a later default from hiding an earlier
    # value.
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, default=argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="reelwatch",
        description="Keep a catalog of the video files under the allowed scan "
        "roots, and query it.",
        epilog="Exit status: 0 success, 1 error returned by the daemon, 2 invalid "
        "usage or configuration, 3 daemon not running, 4 scanned job did not "
        "complete.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", parents=[common], help="run the daemon in the foreground"
    )
    serve.set_defaults(handler=None)

    status = commands.add_parser(
        "status", parents=[common], help="show roots, job counts and catalog size"
    )
    status.set_defaults(handler=_show_status)

    ping = commands.add_parser(
        "ping", parents=[common], help="check that the daemon responds"
    )
    ping.set_defaults(handler=_ping)

    scan = commands.add_parser("scan", parents=[common], help="queue a scan of PATH")
    scan.add_argument("path", metavar="PATH", help="a file or folder in a root")
    scan.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="scan only the files directly in PATH, not its subfolders",
    )
    scan.add_argument("--wait", action="store_true", help="wait for the job to finish")
    scan.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="with --wait: give up after SECONDS (default: wait as long as needed)",
    )
    scan.set_defaults(handler=_scan)

    job = commands.add_parser("job", parents=[common], help="show one job")
    job.add_argument("job_id", type=_positive_int, metavar="ID")
    job.set_defaults(handler=_show_job)

    jobs = commands.add_parser("jobs", parents=[common], help="list recent jobs")
    jobs.add_argument(
        "--status",
        choices=[state.value for state in JobState],
        help="only jobs in this state",
    )
    jobs.add_argument(
        "--limit",
        type=_page_size,
        default=DEFAULT_JOBS_LIMIT,
        metavar="N",
        help=f"at most N jobs, newest first (default {DEFAULT_JOBS_LIMIT})",
    )
    jobs.set_defaults(handler=_list_jobs)

    videos = commands.add_parser("videos", parents=[common], help="list the catalog")
    videos.add_argument("--under", metavar="PATH", help="only videos below PATH")
    videos.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="at most N videos (default all)",
    )
    videos.add_argument(
        "--cursor", metavar="CURSOR", help="continue after an earlier next_cursor"
    )
    videos.set_defaults(handler=_list_videos)

    return parser


def run(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    stdout: TextIO | None = None,
) -> int:
    """Run one ``reelwatch`` command and return its exit status.

    Errors are raised, not printed; ``reelwatch.__main__`` turns them into a
    message and an exit status.

    Raises:
        SystemExit: the command line is invalid (status 2, usage printed).
        ConfigError: the configuration file is invalid.
        ClientError: the daemon is not running, returned an error, or
            the connection failed.
        JobNotCompleted: ``scan --wait`` saw the job fail or time out.
    """
    args = build_parser().parse_args(argv)
    out = sys.stdout if stdout is None else stdout
    if args.command == "serve":
        return _serve(args.config, environ)

    socket_path = resolve_socket_path(args.socket, args.config, environ)
    handler: Callable[[Client, argparse.Namespace, TextIO], int] = args.handler
    with Client(socket_path) as client:
        return handler(client, args, out)


def resolve_socket_path(
    socket_option: str | None,
    config_option: str | None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Choose the socket to connect to.

    In order: ``--socket``, ``$REELWATCH_SOCKET``, the ``socket_path`` of the
    configuration file (``--config``, ``$REELWATCH_CONFIG``, or the first
    default file that exists), else :func:`reelwatch.client.default_socket_path`.

    Raises:
        ConfigError: a configuration file was found but is invalid.
    """
    from .config import ENV_CONFIG, ENV_SOCKET, default_config_paths, load_config

    if socket_option:
        return os.path.abspath(socket_option)
    if environ.get(ENV_SOCKET):
        return os.path.abspath(environ[ENV_SOCKET])
    config_file = config_option or environ.get(ENV_CONFIG)
    if not config_file:
        config_file = next(
            (path for path in default_config_paths(environ) if os.path.isfile(path)),
            None,
        )
    if config_file:
        return load_config(config_file, environ).socket_path

    return default_socket_path(environ)


# ---------------------------------------------------------------------------
# Client commands


def _ping(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    answer = client.ping()
    _write(out, _to_json(answer) if args.json else answer)
    return ExitCode.OK


def _show_status(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    status = client.status()
    _write(out, _to_json(status) if args.json else format_status(status))
    return ExitCode.OK


def _scan(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    queued = client.scan(os.path.abspath(args.path), recursive=args.recursive)
    if not args.wait:
        _write(out, _to_json(queued) if args.json else format_queued(queued))
        return ExitCode.OK

    job = _wait_for_job(client, queued.job_id, args.timeout)
    _write(out, _to_json(job) if args.json else format_job(job))
    if job.status != JobState.COMPLETE:
        raise JobNotCompleted(
            f"job {job.id} ended with status {job.status.value}"
            + (f": {job.error}" if job.error else "")
        )
    return ExitCode.OK


def _show_job(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.get_job(args.job_id)
    _write(out, _to_json(job) if args.json else format_job(job))
    return ExitCode.OK


def _list_jobs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    status = None if args.status is None else JobState(args.status)
    jobs = client.list_jobs(status=status, limit=args.limit)
    _write(out, _to_json({"jobs": jobs}) if args.json else format_jobs(jobs))
    return ExitCode.OK


def _list_videos(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    videos: list[Video] = []
    cursor: str | None = args.cursor
    while True:
        wanted = MAX_PAGE_SIZE if args.limit is None else args.limit - len(videos)
        page = client.list_videos(
            under=None if args.under is None else os.path.abspath(args.under),
            limit=min(wanted, MAX_PAGE_SIZE),
            cursor=cursor,
        )
        videos.extend(page.videos)
        cursor = page.next_cursor
        if cursor is None or (args.limit is not None and len(videos) >= args.limit):
            break

    if args.json:
        _write(out, _to_json({"videos": videos, "next_cursor": cursor}))
    else:
        _write(out, format_videos(videos, next_cursor=cursor))
    return ExitCode.OK


def _wait_for_job(client: Client, job_id: int, timeout_s: float | None) -> Job:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    interval = _POLL_START_S
    while True:
        job = client.get_job(job_id)
        if job.status.is_finished:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise JobNotCompleted(
                f"job {job_id} is still {job.status.value} after {timeout_s:g} s; "
                f"check it later with 'reelwatch job {job_id}'"
            )
        time.sleep(interval)
        interval = min(interval * 2, _POLL_MAX_S)


# ---------------------------------------------------------------------------
# Formatting


def format_status(status: Status) -> str:
    """Format ``status`` as a short report with a table of roots."""
    counts = ", ".join(f"{state} {count}" for state, count in status.jobs.items())
    summary = _key_values(
        [
            ("version", status.version),
            ("idle", "yes" if status.idle else "no"),
            ("videos", f"{status.videos:,}"),
            ("jobs", counts or "-"),
        ]
    )
    rows = [[root.path, root.state.value, root.error or ""] for root in status.roots]

    return summary + "\n\n" + format_table(["ROOT", "STATE", "ERROR"], rows)


def format_queued(queued: ScanResult) -> str:
    """Format the result of ``scan`` without ``--wait``."""
    return (
        f"queued job {queued.job_id}: scan {queued.path} ({queued.status.value}); "
        f"follow it with 'reelwatch job {queued.job_id}'"
    )


def format_job(job: Job) -> str:
    """Format one job as key-value lines, with its result and per-file errors."""
    pairs = [
        ("id", str(job.id)),
        ("kind", job.kind),
        ("path", job.path),
        ("status", job.status.value),
        ("created", _format_time(job.created_at)),
        ("started", _format_time(job.started_at)),
        ("finished", _format_time(job.finished_at)),
        ("took", _format_elapsed(job.started_at, job.finished_at)),
    ]
    if job.progress is not None and not job.status.is_finished:
        pairs.append(("progress", f"{job.progress.done} of {job.progress.total}"))
    if job.error:
        pairs.append(("error", job.error))
    lines = [_key_values(pairs)]
    if job.result is not None:
        lines.extend(_format_result(job.result))

    return "\n".join(lines)


def format_jobs(jobs: Sequence[Job]) -> str:
    """Format jobs as a table, one row per job."""
    rows = [
        [
            str(job.id),
            job.kind,
            job.status.value,
            _format_time(job.created_at),
            _format_elapsed(job.started_at, job.finished_at),
            job.path,
        ]
        for job in jobs
    ]
    if not rows:
        return "no jobs"
    headers = ["ID", "KIND", "STATUS", "CREATED", "TOOK", "PATH"]

    return format_table(headers, rows, right_aligned={0, 4})


def format_videos(videos: Sequence[Video], *, next_cursor: str | None = None) -> str:
    """Format videos as a table; unreadable files show their error."""
    if not videos:
        return "no videos"
    rows = [
        [
            format_size(video.size),
            format_duration(video.duration_s),
            f"{video.width}x{video.height}" if video.width and video.height else "-",
            format_frame_rate(video.frame_rate),
            video.video_codec or "-",
            video.audio_codec or "-",
            video.path if not video.error else f"{video.path}  ({video.error})",
        ]
        for video in videos
    ]
    headers = ["SIZE", "DURATION", "RESOLUTION", "FPS", "VIDEO", "AUDIO", "PATH"]
    table = format_table(headers, rows, right_aligned={0, 1, 3})
    if next_cursor is not None:
        table += f"\n(more videos: continue with --cursor {next_cursor})"

    return table


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: set[int] | None = None,
) -> str:
    """Align ``rows`` under ``headers`` with two spaces between columns."""
    right = right_aligned or set()
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def format_size(size: int | None) -> str:
    """Format a byte count with binary units: ``263.3 MiB``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")


def format_duration(seconds: float | None) -> str:
    """Format a media duration as ``m:ss`` or ``h:mm:ss``."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"

    return f"{minutes}:{secs:02d}"


def format_frame_rate(rate: str | None) -> str:
    """Format a ``num/den`` frame rate as frames per second: ``29.97``."""
    if not rate:
        return "-"
    numerator, _, denominator = rate.partition("/")
    try:
        fps = int(numerator) / int(denominator or "1")
    except (ValueError, ZeroDivisionError):
        return rate

    return f"{fps:.3f}".rstrip("0").rstrip(".")


def _format_result(result: Mapping[str, Any]) -> list[str]:
    counts = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in result.items()
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    lines = [f"{'result':<9} {', '.join(counts)}"] if counts else []
    errors = result.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, Mapping):
                message = error.get("message") or error.get("error") or ""
                lines.append(f"  {error.get('path', '?')}: {message}")

    return lines


def _format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _format_elapsed(started: float | None, finished: float | None) -> str:
    if started is None or finished is None:
        return "-"
    return f"{finished - started:.1f} s"


def _key_values(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in pairs)


def _to_json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def _write(out: TextIO, text: str) -> None:
    out.write(text + "\n")


def _add_common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=default,
        help="the daemon's control socket (default: $REELWATCH_SOCKET, then the "
        "configuration's socket_path)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="the configuration file (default: $REELWATCH_CONFIG, then "
        "~/.config/reelwatch/reelwatch.toml, then /etc/reelwatch/reelwatch.toml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="print the result as JSON instead of a table",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _page_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected a number <= {MAX_PAGE_SIZE}, got {value}"
        )
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, got {text!r}"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


# ---------------------------------------------------------------------------
# serve


def _serve(config_path: str | None, environ: Mapping[str, str]) -> int:
    # Imported here so client commands start fast and work without the core.
    from .config import load_config
    from .daemon import Daemon
    from .logs import configure_logging
    from .systemd import Notifier, listen_fds

    config = load_config(config_path, environ)
    configure_logging(config.log_level, config.log_format)
    activated = listen_fds()
    if len(activated) > 1:
        log.warning(
            "extra_listen_sockets_ignored",
            used=activated[0].name,
            ignored=[s.name for s in activated[1:]],
        )
    daemon = Daemon(
        config,
        listen_socket=activated[0].socket if activated else None,
        config_loader=lambda: load_config(config_path, environ),
    )
    with Notifier() as notifier:
        anyio.run(_run_until_signal, daemon, notifier)

    return ExitCode.OK


class _NotifyReady:
    """A task status that notifies systemd once the daemon is ready."""

    def __init__(self, notifier: Any) -> None:
        self._notifier = notifier

    def started(self, value: None = None) -> None:
        self._notifier.ready()
        self._notifier.status("serving")


async def _run_until_signal(daemon: Any, notifier: Any) -> None:
    """Run the daemon until the first SIGINT or SIGTERM, then stop it cleanly.

    A second signal, or a stop that takes longer than DRAIN_TIMEOUT_S, ends the
    process at once, since waiting is then what the operator asked to skip.
    SIGHUP reloads the configuration, between RELOADING=1 and READY=1.
    """
    from .systemd import run_watchdog

    daemon_scope = anyio.CancelScope()
    with anyio.open_signal_receiver(
        signal.SIGINT, signal.SIGTERM, signal.SIGHUP
    ) as signals:
        async with anyio.create_task_group() as task_group:

            async def reload_config() -> None:
                notifier.reloading()
                try:
                    await daemon.reload()
                finally:
                    notifier.ready()

            async def stop_on_signals() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        log.info("reload_requested", signal=name)
                        task_group.start_soon(reload_config)
                        continue
                    if daemon_scope.cancel_called:
                        log.error("forced_exit", signal=name)
                        os._exit(128 + signum)
                    log.info("shutdown_requested", signal=name)
                    notifier.stopping()
                    daemon_scope.cancel()
                    task_group.start_soon(exit_after_deadline)

            async def exit_after_deadline() -> None:
                await anyio.sleep(DRAIN_TIMEOUT_S)
                log.error("shutdown_timed_out", timeout_s=DRAIN_TIMEOUT_S)
                os._exit(ExitCode.ERROR)

            task_group.start_soon(stop_on_signals)
            task_group.start_soon(run_watchdog, notifier)
            task_group.start_soon(daemon.report_status, notifier.status)
            with daemon_scope:
                await daemon.run(task_status=_NotifyReady(notifier))
            task_group.cancel_scope.cancel()
