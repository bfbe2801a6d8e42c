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
from .client import Client, Notification, default_socket_path
from .completion import SHELLS, TOPICS, completion_script
from .models import Job, JobState, Status, Video
from .protocol import (
    MAX_PAGE_SIZE,
    MAX_SYNC_TIMEOUT_S,
    CatalogStats,
    ScanResult,
    VideosListResult,
    encode_json,
)

__all__ = [
    "DEFAULT_JOBS_LIMIT",
    "ExitCode",
    "JobNotCompleted",
    "build_parser",
    "escape_control",
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
_PROGRESS_BAR_WIDTH: Final = 30
# Characters that a terminal acts on instead of printing: C0 controls, DEL,
# C1 controls (0x9b alone starts an escape sequence on some terminals), and
# the Unicode bidirectional overrides and isolates, which reorder a line.
_CONTROL_ESCAPES: Final[dict[int, str]] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    **{
        code: f"\\u{code:04x}"
        for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
    },
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


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
    SYNC_TIMEOUT = 5
    """``--sync``: the daemon could not see every change settle in time."""
    DROPPED = 6
    """``events``: the daemon dropped the subscription for reading too slowly."""
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
        epilog="Exit status: 0 success, 1 error returned by the daemon or failed "
        "connection, 2 invalid usage or configuration, 3 daemon not running, "
        "4 scanned job did not complete, 5 --sync timed out, 6 events "
        "subscription dropped, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # serve reads its socket from the configuration and prints only logs, so
    # it takes --config alone.
    serve_common = argparse.ArgumentParser(add_help=False)
    _add_config_option(serve_common, default=argparse.SUPPRESS)
    serve = commands.add_parser(
        "serve", parents=[serve_common], help="run the daemon in the foreground"
    )
    serve.set_defaults(handler=None)

    status = commands.add_parser(
        "status", parents=[common], help="show roots, job counts and catalog size"
    )
    _add_sync_options(status)
    status.set_defaults(handler=_show_status)

    ping = commands.add_parser(
        "ping", parents=[common], help="check that the daemon responds"
    )
    ping.set_defaults(handler=_ping)

    scan = commands.add_parser("scan", parents=[common], help="queue a scan of PATH")
    scan.add_argument(
        "path", type=_path, metavar="PATH", help="a file or folder in a root"
    )
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

    rescan = commands.add_parser(
        "rescan", parents=[common], help="queue a full scan of one root or all"
    )
    rescan.add_argument(
        "root",
        type=_path,
        metavar="ROOT",
        nargs="?",
        help="an allowed scan root (default: all)",
    )
    rescan.set_defaults(handler=_rescan)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job_id", type=_positive_int, metavar="JOB")
    cancel.set_defaults(handler=_cancel)

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
    videos.add_argument(
        "--under", type=_path, metavar="PATH", help="only videos below PATH"
    )
    videos.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="at most N videos (default all)",
    )
    videos.add_argument(
        "--cursor", metavar="CURSOR", help="continue after an earlier next_cursor"
    )
    videos.add_argument(
        "--since",
        metavar="CURSOR",
        help="only what changed after an earlier change cursor (printed by "
        "--json as 'cursor')",
    )
    _add_sync_options(videos)
    videos.set_defaults(handler=_list_videos)

    video = commands.add_parser(
        "video", parents=[common], help="show the catalog entry of one file"
    )
    video.add_argument(
        "path", type=_path, metavar="PATH", help="a video file in a root"
    )
    _add_sync_options(video)
    video.set_defaults(handler=_show_video)

    stats = commands.add_parser("stats", parents=[common], help="show catalog totals")
    stats.add_argument(
        "--under", type=_path, metavar="PATH", help="only videos below PATH"
    )
    stats.set_defaults(handler=_show_stats)

    metrics = commands.add_parser(
        "metrics", parents=[common], help="print metrics in the Prometheus format"
    )
    metrics.set_defaults(handler=_show_metrics)

    config = commands.add_parser(
        "config", parents=[common], help="show the daemon's effective configuration"
    )
    config.set_defaults(handler=_show_config)

    events = commands.add_parser(
        "events", parents=[common], help="print notifications as they happen"
    )
    events.add_argument(
        "--follow",
        action="store_true",
        help="keep printing until interrupted (the default without --count)",
    )
    events.add_argument(
        "--topic",
        action="append",
        choices=TOPICS,
        metavar="TOPIC",
        help="subscribe to TOPIC; repeat for more (default: all of "
        + ", ".join(TOPICS)
        + ")",
    )
    events.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="exit after N notifications",
    )
    events.set_defaults(handler=_follow_events)

    completion = commands.add_parser(
        "completion", help="print the shell completion script"
    )
    completion.add_argument(
        "shell", choices=SHELLS, metavar="SHELL", help="bash or zsh"
    )
    completion.set_defaults(handler=None)

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
    if args.command == "completion":
        out.write(completion_script(args.shell))
        return ExitCode.OK

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

    In order: ``--socket``, ``$REELWATCH_SOCKET``, then ``socket_path`` or
    ``state_dir`` (with ``$REELWATCH_STATE_DIR``) from the configuration file
    (``--config``, ``$REELWATCH_CONFIG``, or the first default file that
    exists), else :func:`reelwatch.client.default_socket_path`, which is
    where the systemd units put it. Keys only the daemon needs, such as
    ``allowed_scan_roots``, may be missing.

    Raises:
        ConfigError: a configuration file was named but is missing, or was
            found but is invalid.
    """
    from .config import load_socket_path

    if socket_option:
        return os.path.abspath(socket_option)
    configured = load_socket_path(config_option, environ)
    if configured is not None:
        return configured

    return default_socket_path(environ)


# ---------------------------------------------------------------------------
# Client commands


def _ping(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    answer = client.ping()
    _emit(out, args, answer, answer)
    return ExitCode.OK


def _show_status(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    status = client.status(sync=args.sync, sync_timeout_s=args.sync_timeout)
    _emit(out, args, status, format_status)
    return ExitCode.OK


def _rescan(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    root = None if args.root is None else os.path.abspath(args.root)
    queued = client.rescan(root)
    if _machine_output(args):
        _emit_list(out, args, "jobs", queued)
    else:
        _write(out, "\n".join(format_queued(job) for job in queued))
    return ExitCode.OK


def _cancel(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.cancel_job(args.job_id)
    if _machine_output(args):
        _emit(out, args, job, format_job)
    elif job.status == JobState.CANCELLED:
        _write(out, f"job {job.id} cancelled")
    elif job.status.is_finished:
        _write(out, f"job {job.id} had already finished ({job.status.value})")
    else:
        _write(
            out,
            f"job {job.id} is {job.status.value}; it stops at its next batch of "
            f"files (check with 'reelwatch job {job.id}')",
        )
    return ExitCode.OK


def _show_video(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    video = client.get_video(
        os.path.abspath(args.path), sync=args.sync, sync_timeout_s=args.sync_timeout
    )
    _emit(out, args, video, format_video)
    return ExitCode.OK


def _show_stats(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    under = None if args.under is None else os.path.abspath(args.under)
    stats = client.stats(under=under)
    _emit(out, args, stats, format_stats)
    return ExitCode.OK


def _show_metrics(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    text = client.metrics()
    if _machine_output(args):
        _emit(out, args, text, text)
    else:
        out.write(text)
    return ExitCode.OK


def _show_config(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    config = client.config()
    _emit(out, args, config, format_config)
    return ExitCode.OK


def _follow_events(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    topics = args.topic or list(TOPICS)
    received = 0
    with client.subscribe(topics) as subscription:
        for notification in subscription:
            if _machine_output(args):
                _write(out, _to_json_line(notification))
            else:
                _write(out, format_notification(notification))
            out.flush()
            received += 1
            if args.count is not None and received >= args.count:
                break
    return ExitCode.OK


def _scan(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    queued = client.scan(os.path.abspath(args.path), recursive=args.recursive)
    if not args.wait:
        _emit(out, args, queued, format_queued)
        return ExitCode.OK

    progress = _ProgressReporter(sys.stderr, queued.job_id)
    try:
        job = _wait_for_job(client, queued.job_id, args.timeout, progress)
    finally:
        progress.close()
    _emit(out, args, job, format_job)
    if job.status != JobState.COMPLETE:
        raise JobNotCompleted(
            f"job {job.id} ended with status {job.status.value}"
            + (f": {job.error}" if job.error else "")
        )
    return ExitCode.OK


def _show_job(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.get_job(args.job_id)
    _emit(out, args, job, format_job)
    return ExitCode.OK


def _list_jobs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    status = None if args.status is None else JobState(args.status)
    jobs = client.list_jobs(status=status, limit=args.limit)
    if _machine_output(args):
        _emit_list(out, args, "jobs", jobs)
    else:
        _write(out, format_jobs(jobs))
    return ExitCode.OK


def _list_videos(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    under = None if args.under is None else os.path.abspath(args.under)
    if args.since is not None:
        return _list_changes(client, args, out, under)

    videos: list[Video] = []
    cursor: str | None = args.cursor
    change_cursor = ""
    sync = args.sync
    while True:
        wanted = MAX_PAGE_SIZE if args.limit is None else args.limit - len(videos)
        page = client.list_videos(
            under=under,
            limit=min(wanted, MAX_PAGE_SIZE),
            cursor=cursor,
            sync=sync,
            sync_timeout_s=args.sync_timeout,
        )
        # One sync covers the whole listing.
        sync = False
        change_cursor = change_cursor or page.cursor
        videos.extend(page.videos)
        cursor = page.next_cursor
        if cursor is None or (args.limit is not None and len(videos) >= args.limit):
            break

    if args.jsonl:
        for video in videos:
            _write(out, _to_json_line(video))
    elif args.json:
        result = {"videos": videos, "next_cursor": cursor, "cursor": change_cursor}
        _write(out, _to_json(result))
    else:
        _write(out, format_videos(videos, next_cursor=cursor))
    return ExitCode.OK


def _list_changes(
    client: Client, args: argparse.Namespace, out: TextIO, under: str | None
) -> int:
    since: str = args.since
    sync = args.sync
    changes = VideosListResult(videos=[], cursor=since)
    while True:
        page = client.list_videos(
            under=under,
            limit=MAX_PAGE_SIZE,
            since=since,
            sync=sync,
            sync_timeout_s=args.sync_timeout,
        )
        sync = False
        changes.videos.extend(page.videos)
        changes.removed.extend(page.removed)
        changes.cursor = since = page.cursor
        changes.fresh_instance = page.fresh_instance
        if not page.more or page.fresh_instance:
            break

    if args.jsonl:
        for video in changes.videos:
            _write(out, _to_json_line({"change": "changed", "video": video}))
        for removed in changes.removed:
            _write(
                out,
                _to_json_line({"change": "removed", **msgspec.to_builtins(removed)}),
            )
        _write(
            out,
            _to_json_line(
                {"cursor": changes.cursor, "fresh_instance": changes.fresh_instance}
            ),
        )
    elif args.json:
        _write(out, _to_json(changes))
    else:
        _write(out, format_changes(changes))
    return ExitCode.OK


def _wait_for_job(
    client: Client,
    job_id: int,
    timeout_s: float | None,
    progress: _ProgressReporter,
) -> Job:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    interval = _POLL_START_S
    while True:
        job = client.get_job(job_id)
        progress.update(job)
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
    pairs = [
        ("version", status.version),
        ("idle", "yes" if status.idle else "no"),
        ("videos", f"{status.videos:,}"),
        ("jobs", counts or "-"),
        ("settling", f"{status.settling:,}"),
        ("probes", f"{status.probes:,}"),
    ]
    # The daemon keeps running in these states, so they are easy to miss:
    # they come last, where the eye lands.
    if status.config_error:
        pairs.append(("config error", f"{status.config_error} (old config kept)"))
    if status.storage_error:
        pairs.append(("storage error", status.storage_error))
    rows = [[root.path, root.state.value, root.error or ""] for root in status.roots]

    return _key_values(pairs) + "\n\n" + format_table(["ROOT", "STATE", "ERROR"], rows)


def format_queued(queued: ScanResult) -> str:
    """Format the result of ``scan`` without ``--wait``."""
    return (
        f"queued job {queued.job_id}: scan {escape_control(queued.path)} "
        f"({queued.status.value}); follow it with 'reelwatch job {queued.job_id}'"
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
            _resolution(video),
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
        table += (
            f"\n(more videos: continue with --cursor {escape_control(next_cursor)})"
        )

    return table


def format_video(video: Video) -> str:
    """Format one catalog entry as key-value lines."""
    pairs = [
        ("id", str(video.id)),
        ("path", video.path),
        ("size", f"{format_size(video.size)} ({video.size:,} bytes)"),
        ("modified", _format_time(video.mtime_ns / 1e9)),
        ("container", video.container or "-"),
        ("duration", format_duration(video.duration_s)),
        ("resolution", _resolution(video)),
        ("frame rate", format_frame_rate(video.frame_rate)),
        ("video", video.video_codec or "-"),
        ("audio", video.audio_codec or "-"),
    ]
    if video.bit_rate:
        pairs.append(("bit rate", f"{video.bit_rate / 1000:.0f} kb/s"))
    if video.offline:
        pairs.append(("offline", "yes (its root is missing)"))
    if video.error:
        pairs.append(("error", video.error))
    return _key_values(pairs)


def format_stats(stats: CatalogStats) -> str:
    """Format catalog totals, then one table per breakdown."""
    summary = _key_values(
        [
            ("videos", f"{stats.videos:,}"),
            ("total size", format_size(stats.total_size)),
            ("total duration", format_duration(stats.total_duration_s)),
            ("errors", f"{stats.errors:,}"),
            ("offline", f"{stats.offline:,}"),
        ]
    )
    sections = [summary]
    for title, counts in (
        ("CONTAINER", stats.by_container),
        ("VIDEO CODEC", stats.by_video_codec),
        ("AUDIO CODEC", stats.by_audio_codec),
        ("RESOLUTION", stats.by_resolution),
    ):
        if counts:
            rows = [[name, f"{count:,}"] for name, count in counts.items()]
            sections.append(format_table([title, "VIDEOS"], rows, right_aligned={1}))
    return "\n\n".join(sections)


def format_config(config: Mapping[str, Any], prefix: str = "") -> str:
    """Format a configuration as ``key = value`` lines, sections dotted."""
    lines = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            lines.append(format_config(value, prefix=f"{name}."))
        else:
            encoded = msgspec.json.encode(value).decode()
            lines.append(escape_control(f"{name} = {encoded}"))
    return "\n".join(line for line in lines if line)


def format_notification(notification: Notification) -> str:
    """Format one notification as a line: time, topic, then what changed."""
    params = notification.params if isinstance(notification.params, dict) else {}
    stamp = time.strftime("%H:%M:%S")
    topic = notification.method
    if topic == "job.updated":
        detail = (
            f"job {params.get('id')} {params.get('kind', '')} "
            f"{params.get('status')} {params.get('path', '')}"
        )
        if params.get("error"):
            detail += f" ({params['error']})"
    elif topic in ("video.added", "video.updated"):
        video = msgspec.convert(params, Video)
        detail = f"{video.path}  {_video_summary(video)}"
    elif topic == "video.removed":
        detail = str(params.get("path"))
        if params.get("moved_to"):
            detail += f" -> {params['moved_to']}"
    elif topic == "root.state":
        detail = f"{params.get('path')} {params.get('state')}"
        if params.get("error"):
            detail += f" ({params['error']})"
    else:
        detail = msgspec.json.encode(params).decode()
    return escape_control(f"{stamp}  {topic:<13}  {detail}")


def format_changes(changes: VideosListResult) -> str:
    """Format the result of ``videos --since``."""
    cursor = escape_control(changes.cursor)
    if changes.fresh_instance:
        return (
            "the cursor is from an earlier daemon run or too old; list everything "
            f"again with 'reelwatch videos' (new cursor: {cursor})"
        )
    rows = [["changed", video.path] for video in changes.videos]
    rows += [["removed", removed.path] for removed in changes.removed]
    table = format_table(["CHANGE", "PATH"], rows) if rows else "no changes"
    return f"{table}\n(next: --since {cursor})"


def _video_summary(video: Video) -> str:
    if video.error:
        return f"error: {video.error}"
    parts = [
        video.container or "-",
        video.video_codec or "-",
        video.audio_codec or "no audio",
        _resolution(video),
        format_duration(video.duration_s),
    ]
    return " ".join(parts)


def _resolution(video: Video) -> str:
    return f"{video.width}x{video.height}" if video.width and video.height else "-"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: set[int] | None = None,
) -> str:
    """Align ``rows`` under ``headers`` with two spaces between columns.

    Control characters in cells are escaped (see :func:`escape_control`).
    """
    right = right_aligned or set()
    rows = [[escape_control(cell) for cell in row] for row in rows]
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


def escape_control(text: str) -> str:
    """Escape the characters a terminal would act on, for human-readable output.

    A file name can contain any byte but ``/`` and NUL, so escape sequences
    (title changes, cursor moves), carriage returns and newlines in a name
    would otherwise reach the terminal or split a table row. They are shown
    as ``\\x1b``, ``\\n``, ``\\r``, ``\\t`` or ``\\u202e``. A backslash in a
    name is left as is, so ``--json`` is the way to read names exactly.
    """
    return text.translate(_CONTROL_ESCAPES)


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
                line = f"  {error.get('path', '?')}: {message}"
                lines.append(escape_control(line))

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
    return "\n".join(f"{key:<{width}}  {escape_control(value)}" for key, value in pairs)


def _to_json(value: Any) -> str:
    return msgspec.json.format(_encode(value), indent=2).decode()


def _to_json_line(value: Any) -> str:
    return _encode(value).decode()


def _encode(value: Any) -> bytes:
    # A file name that is not valid UTF-8 is printed as the daemon sends it:
    # U+FFFD for each invalid byte, plus the exact bytes in *_bytes_b64.
    return encode_json(value)


def _machine_output(args: argparse.Namespace) -> bool:
    return bool(args.json or args.jsonl)


def _emit(out: TextIO, args: argparse.Namespace, value: Any, human: Any) -> None:
    """Print ``value`` as JSON, as one JSON line, or with the ``human`` formatter."""
    if args.jsonl:
        _write(out, _to_json_line(value))
    elif args.json:
        _write(out, _to_json(value))
    else:
        _write(out, human(value) if callable(human) else str(human))


def _emit_list(
    out: TextIO, args: argparse.Namespace, key: str, items: Sequence[Any]
) -> None:
    """Print a list as ``{key: [...]}`` with --json, or one item per line."""
    if args.jsonl:
        for item in items:
            _write(out, _to_json_line(item))
    else:
        _write(out, _to_json({key: items}))


class _ProgressReporter:
    """Shows a waited-for job's progress on stderr.

    On a terminal a bar is redrawn in place; otherwise a plain line is written
    each time the state or the count of finished files changes.
    """

    def __init__(self, stream: TextIO, job_id: int) -> None:
        self._stream = stream
        self._job_id = job_id
        self._is_terminal = stream.isatty()
        self._last = ""
        self._drawn = False

    def update(self, job: Job) -> None:
        if self._is_terminal:
            self._draw_bar(job)
            return
        done = (
            ""
            if job.progress is None
            else f", {job.progress.done} of {job.progress.total} files"
        )
        line = f"job {job.id}: {job.status.value}{done}"
        if line != self._last:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._last = line

    def _draw_bar(self, job: Job) -> None:
        if job.progress is None or job.progress.total == 0:
            text = f"job {job.id}: {job.status.value}"
        else:
            fraction = job.progress.done / job.progress.total
            filled = round(fraction * _PROGRESS_BAR_WIDTH)
            bar = "#" * filled + "-" * (_PROGRESS_BAR_WIDTH - filled)
            text = (
                f"job {job.id}: [{bar}] {job.progress.done}/{job.progress.total} "
                f"files ({fraction:.0%})"
            )
        padding = " " * max(len(self._last) - len(text), 0)
        self._stream.write("\r" + text + padding)
        self._stream.flush()
        self._last = text
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _write(out: TextIO, text: str) -> None:
    # File names that are not valid UTF-8 (str with surrogate escapes) get
    # U+FFFD for each invalid byte, since a strict stdout cannot print them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    out.write(text + "\n")


def _add_common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=default,
        help="the daemon's control socket (default: $REELWATCH_SOCKET, then the "
        "configuration's socket_path or state_dir, then "
        "$XDG_RUNTIME_DIR/reelwatch/reelwatch.sock or /run/reelwatch/reelwatch.sock)",
    )
    _add_config_option(parser, default=default)
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="print the result as JSON instead of a table",
    )
    parser.add_argument(
        "--jsonl",
        action="store_true",
        default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="print JSON Lines: one compact JSON value per line, one line per "
        "video, job or event",
    )


def _add_config_option(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="the configuration file (default: $REELWATCH_CONFIG, then "
        "~/.config/reelwatch/reelwatch.toml, then /etc/reelwatch/reelwatch.toml)",
    )


def _add_sync_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sync",
        action="store_true",
        help="first wait until every change made on disk before this command is "
        "in the catalog",
    )
    parser.add_argument(
        "--sync-timeout",
        type=_sync_timeout,
        metavar="SECONDS",
        help="with --sync: give up after SECONDS, at most "
        f"{MAX_SYNC_TIMEOUT_S:g} (default 60); exit status 5",
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


def _path(text: str) -> str:
    # Made absolute later, an empty string would become the working folder.
    if not text:
        raise argparse.ArgumentTypeError("path must not be empty")
    return text


def _sync_timeout(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_SYNC_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_SYNC_TIMEOUT_S:g} seconds, got {text}"
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
