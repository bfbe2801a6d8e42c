"""An in-memory Service and helpers that run a ControlServer on a temporary socket.

The catalog and jobs here are the ones shown in docs/protocol.md, so the
documented examples can be checked word for word against this double.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from reelwatch.errors import InvalidParamsError, NotFoundError, PathNotAllowedError
from reelwatch.events import ChangeJournal, EventBus, Subscription
from reelwatch.metrics import DaemonMetrics, compute_stats
from reelwatch.models import (
    Job,
    JobState,
    RootState,
    RootStatus,
    Status,
    Video,
    VideoPage,
)
from reelwatch.protocol import CatalogStats, RemovedVideo, VideosListResult
from reelwatch.server import ControlServer, SocketOptions, describe_config

ROOTS = ("/srv/media/movies", "/srv/media/tv")
BASE_TIME = 1714561200.0
# The change-journal instance of the double, so documented cursors are stable.
INSTANCE = "5f0c3a1e9b2d4c6a"


def make_videos() -> list[Video]:
    """Return the catalog of the double, in path order."""
    return [
        Video(
            id=1,
            path="/srv/media/movies/big-buck-bunny.mp4",
            size=276134947,
            mtime_ns=1714560000000000000,
            container="mp4",
            duration_s=596.458,
            width=1920,
            height=1080,
            frame_rate="24/1",
            video_codec="h264",
            audio_codec="aac",
            root="/srv/media/movies",
        ),
        Video(
            id=3,
            path="/srv/media/tv/show/notes.avi",
            size=1048576,
            mtime_ns=1714560300000000000,
            error="unsupported container: avi",
            error_kind="unsupported",
            root="/srv/media/tv",
        ),
        Video(
            id=2,
            path="/srv/media/tv/show/s01e01.mkv",
            size=734003200,
            mtime_ns=1714560600000000000,
            container="matroska",
            duration_s=1421.5,
            width=1280,
            height=720,
            frame_rate="30000/1001",
            video_codec="hevc",
            audio_codec="opus",
            root="/srv/media/tv",
        ),
    ]


def make_jobs() -> list[Job]:
    """Return the finished jobs the double starts with, oldest first."""
    return [
        Job(
            id=1,
            kind="scan",
            path="/srv/media/movies",
            status=JobState.COMPLETE,
            created_at=BASE_TIME,
            started_at=BASE_TIME + 0.5,
            finished_at=BASE_TIME + 2.0,
            result={
                "path": "/srv/media/movies",
                "scanned": 1,
                "new": 1,
                "updated": 0,
                "removed": 0,
                "skipped": 0,
                "error_count": 0,
                "errors": [],
            },
        ),
        Job(
            id=2,
            kind="scan",
            path="/srv/media/tv",
            status=JobState.FAILED,
            created_at=BASE_TIME + 10.0,
            started_at=BASE_TIME + 10.5,
            finished_at=BASE_TIME + 11.0,
            error="scan root /srv/media/tv is not readable: Permission denied",
        ),
    ]


class FakeService:
    """An in-memory :class:`reelwatch.service.Service` with a fixed catalog.

    ``gate``, when set, makes ``status`` wait for the event, so tests can keep
    a request in flight; ``status_entered`` is set once ``status`` runs.
    ``status_error``, when set, is raised by ``status``. ``finish_scans_after``
    makes a queued scan finish, with ``scan_outcome`` as its state, after that
    many ``job.get`` calls.
    """

    def __init__(self) -> None:
        self.videos = make_videos()
        self.jobs = {job.id: job for job in make_jobs()}
        self.events = EventBus()
        self.journal = ChangeJournal(instance=INSTANCE)
        self.metrics_registry = DaemonMetrics()
        self.syncs: list[str | None] = []
        self.gate: anyio.Event | None = None
        self.status_entered = anyio.Event()
        self.status_error: Exception | None = None
        self.finish_scans_after: int | None = None
        self.scan_outcome = JobState.COMPLETE
        self.calls: list[str] = []
        self._polls: dict[int, int] = {}

    async def status(self, *, sync: bool = False, sync_timeout_s: float = 60) -> Status:
        self.calls.append("status")
        if sync:
            self.syncs.append(None)
        self.status_entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.status_error is not None:
            raise self.status_error
        counts = {state.value: 0 for state in JobState}
        for job in self.jobs.values():
            counts[job.status.value] += 1
        pending = counts["pending"] + counts["running"]

        return Status(
            version="0.1.0",
            idle=pending == 0,
            roots=[RootStatus(path=root, state=RootState.WATCHING) for root in ROOTS],
            jobs=counts,
            videos=len(self.videos),
        )

    async def scan(self, path: str, *, recursive: bool = True) -> Job:
        self.calls.append("scan")
        if not any(_is_under(path, root) for root in ROOTS):
            raise PathNotAllowedError(
                f"path {path!r} is not inside an allowed scan root "
                f"({', '.join(ROOTS)}); add its folder to allowed_scan_roots or "
                "pick a path inside one"
            )
        job_id = max(self.jobs) + 1
        job = Job(
            id=job_id,
            kind="scan",
            path=path,
            status=JobState.PENDING,
            created_at=BASE_TIME + 60.0,
            params={"recursive": recursive},
        )
        self.jobs[job_id] = job
        self.events.publish("job.updated", job)
        return job

    async def rescan(self, root: str | None) -> list[Job]:
        self.calls.append("rescan")
        if root is not None and root not in ROOTS:
            if any(_is_under(root, r) for r in ROOTS):
                raise InvalidParamsError(f"root '{root}' is not a scan root")
            raise PathNotAllowedError(
                f"root {root!r} is not inside an allowed scan root "
                f"({', '.join(ROOTS)}); add its folder to allowed_scan_roots or "
                "pick a path inside one"
            )
        return [await self.scan(path) for path in ([root] if root else ROOTS)]

    async def cancel_job(self, job_id: int) -> Job:
        self.calls.append("job.cancel")
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"job {job_id} not found; it never existed or was pruned after "
                "finishing (list recent jobs with jobs.list)"
            )
        if job.status == JobState.PENDING:
            job = msgspec.structs.replace(
                job,
                status=JobState.CANCELLED,
                finished_at=job.created_at + 5.0,
                error="cancelled on request before it started",
            )
            self.jobs[job_id] = job
            self.events.publish("job.updated", job)
        return job

    async def get_video(
        self, path: str, *, sync: bool = False, sync_timeout_s: float = 60
    ) -> Video:
        self.calls.append("video.get")
        if not any(_is_under(path, root) for root in ROOTS):
            raise PathNotAllowedError(
                f"path {path!r} is not inside an allowed scan root "
                f"({', '.join(ROOTS)}); add its folder to allowed_scan_roots or "
                "pick a path inside one"
            )
        if sync:
            self.syncs.append(path)
        for video in self.videos:
            if video.path == path:
                return video
        raise NotFoundError(f"no catalog entry for '{path}'")

    async def stats(self, *, under: str | None) -> CatalogStats:
        self.calls.append("stats")
        return await compute_stats(self, under=under)

    async def effective_config(self) -> dict[str, Any]:
        self.calls.append("config.get")
        config = {
            "allowed_scan_roots": list(ROOTS),
            "state_dir": "/var/lib/reelwatch",
            "socket_path": "/run/reelwatch/reelwatch.sock",
            "socket": SocketOptions(),
        }
        return describe_config(msgspec.convert(config, _DocConfig))

    async def metrics(self) -> str:
        self.calls.append("metrics")
        counts = {state.value: 0 for state in JobState}
        for job in self.jobs.values():
            counts[job.status.value] += 1
        return self.metrics_registry.render(
            jobs_by_state=counts,
            catalog_videos=len(self.videos),
            connections=1,
            connections_accepted=1,
            connections_rejected=0,
            subscribers=self.events.subscriber_count,
        )

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        max_backlog: int,
        on_drop: Callable[[], None] | None = None,
    ) -> Subscription:
        return self.events.subscribe(topics, max_backlog=max_backlog, on_drop=on_drop)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.events.unsubscribe(subscription)

    def change_cursor(self) -> str:
        return self.journal.cursor

    def remove_video(self, path: str) -> None:
        """Drop a catalog entry and journal it, as a scan that found it gone would."""
        [video] = [v for v in self.videos if v.path == path]
        self.videos.remove(video)
        self.journal.record(path, removed=True, video_id=video.id)
        self.events.publish("video.removed", {"id": video.id, "path": path})

    def add_video(self, video: Video) -> None:
        """Add a catalog entry in path order and journal it."""
        self.videos.append(video)
        self.videos.sort(key=lambda v: os.fsencode(v.path))
        self.journal.record(video.path, removed=False)
        self.events.publish("video.added", video)

    async def list_changes(
        self,
        *,
        since: str,
        under: str | None,
        limit: int,
        sync: bool = False,
        sync_timeout_s: float = 60,
    ) -> VideosListResult:
        self.calls.append("videos.list")
        changes = self.journal.since(since, under=under, limit=limit)
        by_path = {video.path: video for video in self.videos}
        result = VideosListResult(
            videos=[],
            cursor=changes.cursor,
            more=changes.more,
            fresh_instance=changes.fresh_instance,
        )
        for entry in changes.entries:
            if entry.path in by_path and not entry.removed:
                result.videos.append(by_path[entry.path])
            else:
                result.removed.append(RemovedVideo(id=entry.video_id, path=entry.path))
        return result

    async def get_job(self, job_id: int) -> Job:
        self.calls.append("job.get")
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"job {job_id} not found; it never existed or was pruned after "
                "finishing (list recent jobs with jobs.list)"
            )
        if self.finish_scans_after is not None and not job.status.is_finished:
            polls = self._polls[job_id] = self._polls.get(job_id, 0) + 1
            if polls >= self.finish_scans_after:
                job = self._finish(job)
        return job

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        self.calls.append("jobs.list")
        jobs = sorted(self.jobs.values(), key=lambda job: job.id, reverse=True)
        if status is not None:
            jobs = [job for job in jobs if job.status == status]
        return jobs[:limit]

    async def list_videos(
        self,
        *,
        under: str | None,
        limit: int,
        cursor: str | None,
        sync: bool = False,
        sync_timeout_s: float = 60,
    ) -> VideoPage:
        self.calls.append("videos.list")
        if sync:
            self.syncs.append(under)
        if under is not None and not any(_is_under(under, root) for root in ROOTS):
            raise PathNotAllowedError(
                f"under {under!r} is not inside an allowed scan root "
                f"({', '.join(ROOTS)}); add its folder to allowed_scan_roots or "
                "pick a path inside one"
            )
        start = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise InvalidParamsError(
                    f"invalid cursor '{cursor}'; pass a next_cursor from an "
                    "earlier videos.list"
                )
            start = int(cursor)
        videos = [v for v in self.videos if under is None or _is_under(v.path, under)]
        page = videos[start : start + limit]
        end = start + len(page)

        return VideoPage(
            videos=page, next_cursor=str(end) if end < len(videos) else None
        )

    def _finish(self, job: Job) -> Job:
        outcome = self.scan_outcome
        finished = msgspec.structs.replace(
            job,
            status=outcome,
            started_at=job.created_at + 0.25,
            finished_at=job.created_at + 1.5,
            result=(
                {
                    "path": job.path,
                    "scanned": 3,
                    "new": 2,
                    "updated": 0,
                    "removed": 0,
                    "skipped": 1,
                    "error_count": 1,
                    "errors": [
                        {
                            "path": f"{job.path}/bad.mp4",
                            "kind": "corrupt",
                            "message": "corrupt header: moov box truncated",
                        }
                    ],
                }
                if outcome == JobState.COMPLETE
                else None
            ),
            error=None if outcome == JobState.COMPLETE else "scan timed out",
        )
        self.jobs[job.id] = finished
        return finished


class _DocConfig(msgspec.Struct, kw_only=True):
    """The configuration the double reports from ``config.get``."""

    allowed_scan_roots: list[str]
    state_dir: str
    socket_path: str
    socket: SocketOptions
    log_level: str = "info"

    @property
    def database_path(self) -> str:
        return os.path.join(self.state_dir, "reelwatch.db")


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@contextlib.contextmanager
def short_socket_dir() -> Iterator[Path]:
    """Make a temporary directory with a short path, removed afterwards.

    pytest's tmp_path can exceed the 108 bytes a Unix socket address allows.
    """
    with tempfile.TemporaryDirectory(prefix="rw-") as directory:
        yield Path(directory)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait until ``predicate()`` is true, checking every few milliseconds.

    Used for server state that has no event to wait on, such as the count of
    open connections.
    """
    with anyio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - no event exists to wait on
            await anyio.sleep(0.01)


class Harness:
    """A running server plus the raw connections a test opened to it."""

    def __init__(self, server: ControlServer, socket_path: str | os.PathLike[str]):
        self.server = server
        self.socket_path = socket_path
        self.connections: list[RawConnection] = []

    async def connect(self) -> RawConnection:
        conn = await RawConnection.open(self.socket_path)
        self.connections.append(conn)
        return conn


@contextlib.asynccontextmanager
async def running_server(
    service: Any, socket_path: str | os.PathLike[str], **options: Any
) -> AsyncIterator[Harness]:
    """Run a ControlServer in the current event loop for the block's duration."""
    server = ControlServer(service, SocketOptions(**options), socket_path)
    harness = Harness(server, socket_path)
    async with anyio.create_task_group() as task_group:
        await task_group.start(server.serve)
        try:
            yield harness
        finally:
            for conn in harness.connections:
                await conn.aclose()
            # Letting the server see each close before cancelling it avoids
            # an asyncio race in anyio's Unix socket streams, where a read
            # cancelled in the same loop iteration as the socket turns
            # readable logs InvalidStateError.
            with anyio.move_on_after(5):
                await wait_until(lambda: server.active_connections == 0)
            task_group.cancel_scope.cancel()


@contextlib.contextmanager
def server_thread(
    service: Any, socket_path: str | os.PathLike[str], **options: Any
) -> Iterator[ControlServer]:
    """Run a ControlServer in a background event loop, for blocking callers."""
    server = ControlServer(service, SocketOptions(**options), socket_path)
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(server.serve)
        try:
            yield server
        finally:
            # See running_server for why open connections end first.
            portal.call(_wait_for_no_connections, server)
            future.cancel()


async def _wait_for_no_connections(server: ControlServer) -> None:
    with anyio.move_on_after(5):
        await wait_until(lambda: server.active_connections == 0)


class RawConnection:
    """A bare protocol connection: bytes out, lines in, no client library."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    async def open(cls, socket_path: str | os.PathLike[str]) -> RawConnection:
        return cls(await anyio.connect_unix(socket_path))

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send_json(self, message: Any) -> None:
        await self.send(msgspec.json.encode(message) + b"\n")

    async def receive_line(self) -> bytes:
        with anyio.fail_after(10):
            return await self.reader.receive_until(b"\n", 64 * 1024 * 1024)

    async def receive_json(self) -> Any:
        return msgspec.json.decode(await self.receive_line())

    async def request_raw_line(self, data: bytes) -> Any:
        await self.send(data + b"\n")
        return await self.receive_json()

    async def request(self, message: Any) -> Any:
        await self.send_json(message)
        return await self.receive_json()

    async def is_closed_by_server(self) -> bool:
        """Wait until the server closes the connection; return True if it did."""
        with anyio.fail_after(10):
            try:
                data = await self.reader.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True
        raise AssertionError(f"expected the connection to close, got {data!r}")

    async def aclose(self) -> None:
        await self.stream.aclose()
