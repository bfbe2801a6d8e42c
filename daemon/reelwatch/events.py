"""Catalog change tracking: the event bus, subscriptions, the change journal, sync.

Every write to the catalog and to the job table goes through
:class:`PublishingRepository`, which records the change in the
:class:`ChangeJournal` (for ``videos.list`` with ``since``) and publishes it on
the :class:`EventBus` (for clients that called ``subscribe``). Publishing
never waits for a subscriber: each one has a bounded backlog, and one that
falls behind it is dropped. :class:`Synchronizer` makes a read wait until every
change made before the request has been scanned and has settled.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import anyio
import msgspec
import structlog

from .errors import DaemonError, InvalidParamsError, NotFoundError
from .jobs import JobQueue, Priority
from .metrics import ChangeTimer, DaemonMetrics
from .models import Job, JobKind, JobState, Video, VideoPage
from .protocol import RemovedVideo, VideosListResult, encode_notification, to_wire
from .repository import FileState, Repository, StateRow, is_same_or_under
from .watcher import EventSource, WatchBatch

__all__ = [
    "DEFAULT_JOURNAL_ENTRIES",
    "TOPICS",
    "ChangeJournal",
    "EventBus",
    "JournalEntry",
    "JournalSlice",
    "ObservedEventSource",
    "PublishingRepository",
    "Subscription",
    "SubscriptionDropped",
    "SyncTimeoutError",
    "Synchronizer",
    "find_video",
    "list_changes",
]

log = structlog.get_logger(__name__)

TOPICS: Final = frozenset(
    {"job.updated", "video.added", "video.updated", "video.removed", "root.state"}
)
"""The notification topics a client can subscribe to."""

DEFAULT_JOURNAL_ENTRIES: Final = 100_000
"""Paths the change journal remembers; older cursors get ``fresh_instance``."""

# Bytes of unsent notifications one subscriber may hold, whatever the count.
MAX_BACKLOG_BYTES: Final = 8 * 1024 * 1024

_CURSOR_PREFIX: Final = "j1."
_PAGE: Final = 1000
_SYNC_POLL_S: Final = 0.02
_SYNC_POLL_MAX_S: Final = 0.2


# ---------------------------------------------------------------------------
# Event bus and subscriptions


class SubscriptionDropped(Exception):
    """Raised by :meth:`Subscription.next_lines` once the backlog overflowed."""

    def __init__(self, reason: str, limit: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class Subscription:
    """One client's notifications: a bounded backlog of encoded lines.

    Args:
        topics: the topics this subscriber receives.
        max_backlog: unsent notifications kept before the subscriber is
            dropped; :data:`MAX_BACKLOG_BYTES` bounds their total size too.
        on_drop: called once, synchronously, when the backlog overflows.
    """

    def __init__(
        self,
        topics: Iterable[str],
        *,
        max_backlog: int,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.topics = set(topics)
        self.max_backlog = max_backlog
        self._on_drop = on_drop
        self._lines: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._waiter: anyio.Event | None = None
        self.dropped: SubscriptionDropped | None = None
        self.delivered = 0
        self._finished = False

    def __len__(self) -> int:
        return len(self._lines)

    def offer(self, line: bytes) -> None:
        """Queue one encoded notification; never blocks.

        Past the backlog limits the queued lines are discarded, the
        subscription is marked dropped and ``on_drop`` runs.
        """
        if self.dropped is not None or self._finished:
            return
        if (
            len(self._lines) >= self.max_backlog
            or self._bytes + len(line) > MAX_BACKLOG_BYTES
        ):
            self._drop()
            return
        self._lines.append(line)
        self._bytes += len(line)
        self._wake()

    def _drop(self) -> None:
        reason = (
            f"more than {self.max_backlog} notifications (or "
            f"{MAX_BACKLOG_BYTES} bytes) were waiting for this subscriber; "
            "read notifications faster, or subscribe to fewer topics"
        )
        self.dropped = SubscriptionDropped(reason, self.max_backlog)
        self._lines.clear()
        self._bytes = 0
        self._wake()
        if self._on_drop is not None:
            self._on_drop()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def finish(self) -> None:
        """Accept no more notifications; :meth:`next_lines` drains the rest."""
        self._finished = True
        self._wake()

    async def next_lines(self) -> list[bytes]:
        """Wait for notifications and return every queued one, oldest first.

        Returns an empty list once :meth:`finish` was called and nothing is
        left.

        Raises:
            SubscriptionDropped: the backlog overflowed.
        """
        while not self._lines:
            if self.dropped is not None:
                raise self.dropped
            if self._finished:
                return []
            self._waiter = anyio.Event()
            await self._waiter.wait()
        if self.dropped is not None:
            raise self.dropped
        lines = list(self._lines)
        self._lines.clear()
        self._bytes = 0
        self.delivered += len(lines)
        return lines


class EventBus:
    """Fans notifications out to subscriptions without ever waiting for one."""

    def __init__(self, metrics: DaemonMetrics | None = None) -> None:
        self._subscriptions: set[Subscription] = set()
        self._metrics = metrics

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        max_backlog: int,
        on_drop: Callable[[], None] | None = None,
    ) -> Subscription:
        """Open a subscription to ``topics`` (a subset of :data:`TOPICS`)."""
        subscription = Subscription(topics, max_backlog=max_backlog, on_drop=on_drop)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; unknown ones are ignored."""
        self._subscriptions.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        """The number of open subscriptions."""
        return len(self._subscriptions)

    def wants(self, topics: Iterable[str]) -> bool:
        """Tell whether any subscription receives one of ``topics``."""
        wanted = set(topics)
        return any(not wanted.isdisjoint(s.topics) for s in self._subscriptions)

    def publish(self, topic: str, params: Any) -> None:
        """Send notification ``topic`` with ``params`` to its subscribers."""
        line: bytes | None = None
        for subscription in list(self._subscriptions):
            if topic not in subscription.topics:
                continue
            if line is None:
                line = encode_notification(topic, params)
            subscription.offer(line)
            if subscription.dropped is not None:
                self._subscriptions.discard(subscription)
                if self._metrics is not None:
                    self._metrics.subscriptions_dropped.inc()
                log.warning(
                    "subscriber_dropped",
                    reason="backlog_full",
                    limit=subscription.max_backlog,
                )


# ---------------------------------------------------------------------------
# Change journal


class JournalEntry(NamedTuple):
    """The latest change of one path: its sequence number and whether it went."""

    seq: int
    path: str
    removed: bool
    video_id: int | None


class JournalSlice(NamedTuple):
    """The entries after a cursor; ``cursor`` resumes after the last one."""

    entries: list[JournalEntry]
    cursor: str
    more: bool
    fresh_instance: bool


class ChangeJournal:
    """The latest change of each recently changed path, in change order.

    A cursor is ``j1.<instance>.<seq>``; ``instance`` is random per daemon
    start, so a cursor from an earlier run is recognised. The journal keeps the
    ``max_entries`` most recently changed paths; a cursor older than the oldest
    forgotten change gets ``fresh_instance`` too, because changes may be
    missing after it.
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_JOURNAL_ENTRIES, instance: str | None = None
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.instance = instance or secrets.token_hex(8)
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[str, JournalEntry] = (
            collections.OrderedDict()
        )
        self._seq = 0
        # Cursors below this sequence number may have missed a forgotten change.
        self._floor = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cursor(self) -> str:
        """The cursor for "now": changes recorded later come after it."""
        return self._cursor_at(self._seq)

    def _cursor_at(self, seq: int) -> str:
        return f"{_CURSOR_PREFIX}{self.instance}.{seq}"

    def record(self, path: str, *, removed: bool, video_id: int | None = None) -> None:
        """Note that ``path`` changed (or went, with ``removed``) just now."""
        self._seq += 1
        self._entries.pop(path, None)
        self._entries[path] = JournalEntry(self._seq, path, removed, video_id)
        while len(self._entries) > self.max_entries:
            _, oldest = self._entries.popitem(last=False)
            self._floor = oldest.seq

    def since(self, cursor: str, *, under: str | None, limit: int) -> JournalSlice:
        """Return up to ``limit`` changes after ``cursor``, oldest first.

        Raises:
            InvalidParamsError: ``cursor`` is not a journal cursor, or is
                ahead of this journal.
        """
        instance, seq = _parse_cursor(cursor)
        if instance != self.instance or seq < self._floor:
            return JournalSlice([], self.cursor, more=False, fresh_instance=True)
        if seq > self._seq:
            raise InvalidParamsError(
                f"invalid since cursor {cursor!r}: it is ahead of this daemon's "
                "changes; pass a cursor that this daemon returned"
            )

        entries: list[JournalEntry] = []
        for entry in self._entries.values():
            if entry.seq <= seq:
                continue
            if under is not None and not is_same_or_under(entry.path, under):
                continue
            if len(entries) == limit:
                return JournalSlice(
                    entries, self._cursor_at(entries[-1].seq), True, False
                )
            entries.append(entry)
        return JournalSlice(entries, self.cursor, more=False, fresh_instance=False)


def _parse_cursor(cursor: str) -> tuple[str, int]:
    instance, dot, seq_text = cursor.removeprefix(_CURSOR_PREFIX).rpartition(".")
    if not cursor.startswith(_CURSOR_PREFIX) or not dot or not seq_text.isdigit():
        raise InvalidParamsError(
            f"invalid since cursor {cursor!r}: pass the cursor of an earlier "
            "videos.list result"
        )
    return instance, int(seq_text)


# ---------------------------------------------------------------------------
# Repository decorator


class PublishingRepository:
    """A :class:`Repository` that journals and publishes every catalog write.

    Full records for ``video.added`` and ``video.updated`` are read back only
    while someone subscribes to those topics, so without subscribers a write
    costs one journal entry per path.
    """

    def __init__(
        self,
        inner: Repository,
        *,
        bus: EventBus,
        journal: ChangeJournal,
        timer: ChangeTimer | None = None,
    ) -> None:
        self.inner = inner
        self._bus = bus
        self._journal = journal
        self._timer = timer
        # Paths whose video.added waits for the stored record to be read.
        self._pending_added: list[str] = []

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def storage_error(self) -> str | None:
        return self.inner.storage_error

    async def file_states(self, under: str) -> dict[str, FileState]:
        return await self.inner.file_states(under)

    async def file_states_at(self, paths: Sequence[str]) -> dict[str, FileState]:
        return await self.inner.file_states_at(paths)

    async def state_rows(self, under: str) -> list[StateRow]:
        return await self.inner.state_rows(under)

    async def upsert_videos(
        self,
        videos: Sequence[Video],
        *,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> None:
        publish = self._bus.wants(("video.added", "video.updated"))
        existed: set[str] = set()
        if publish:
            for video in videos:
                if await self.inner.get_video(video.path) is not None:
                    existed.add(video.path)

        await self.inner.upsert_videos(videos, fingerprints=fingerprints)
        for video in videos:
            self._journal.record(video.path, removed=False)
            if self._timer is not None:
                self._timer.written(video.path)
        if not publish:
            return
        for video in videos:
            stored = await self.inner.get_video(video.path)
            if stored is not None:
                topic = "video.updated" if video.path in existed else "video.added"
                self._bus.publish(topic, stored)

    async def delete_videos(self, paths: Sequence[str]) -> int:
        doomed = [
            video
            for path in paths
            if (video := await self.inner.get_video(path)) is not None
        ]
        removed = await self.inner.delete_videos(paths)
        self._removed(doomed)
        return removed

    async def delete_videos_under(self, under: str) -> int:
        doomed = await self._all_under(under)
        removed = await self.inner.delete_videos_under(under)
        self._removed(doomed)
        if self._timer is not None:
            self._timer.written(under)
        return removed

    def _removed(self, videos: Sequence[Video]) -> None:
        for video in videos:
            self._journal.record(video.path, removed=True, video_id=video.id)
            if self._timer is not None:
                self._timer.written(video.path)
            self._bus.publish("video.removed", {"id": video.id, "path": video.path})

    async def set_offline(self, under: str, offline: bool) -> int:
        changed = await self.inner.set_offline(under, offline)
        if changed:
            for video in await self._all_under(under):
                if video.offline == offline:
                    self._journal.record(video.path, removed=False)
                    self._bus.publish("video.updated", video)
        return changed

    async def _all_under(self, under: str) -> list[Video]:
        return await self.inner.videos_under(under)

    async def videos_under(self, under: str) -> list[Video]:
        return await self.inner.videos_under(under)

    async def videos_with_inodes(self, keys: Sequence[tuple[int, int]]) -> list[Video]:
        return await self.inner.videos_with_inodes(keys)

    async def set_fingerprints(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        await self.inner.set_fingerprints(fingerprints)

    async def videos_with_fingerprint(
        self, size: int, fingerprint: str, *, not_on_device: int | None = None
    ) -> list[Video]:
        return await self.inner.videos_with_fingerprint(
            size, fingerprint, not_on_device=not_on_device
        )

    async def fingerprinted_sizes(
        self, sizes: Sequence[int], *, not_on_device: int
    ) -> set[int]:
        return await self.inner.fingerprinted_sizes(sizes, not_on_device=not_on_device)

    async def move_video(self, old_path: str, video: Video) -> bool:
        before = await self.inner.get_video(old_path)
        moved = await self.inner.move_video(old_path, video)
        if moved and before is not None:
            self._moved([(before, video.path)])
            await self._publish_pending_added()
        return moved

    async def move_tree(self, old: str, new: str, root: str) -> int:
        before = await self.inner.videos_under(old)
        moved = await self.inner.move_tree(old, new, root)
        if moved:
            old_prefix = old.rstrip("/")
            self._moved(
                [
                    (video, new.rstrip("/") + video.path[len(old_prefix) :])
                    for video in before
                ]
            )
            await self._publish_pending_added()
        return moved

    def _moved(self, moves: Sequence[tuple[Video, str]]) -> None:
        """Journal and publish renamed entries: the old path goes, the new comes.

        The entry keeps its id, so ``video.removed`` carries ``moved_to`` and
        the ``video.added`` that follows has the same ``id``.
        """
        for before, new_path in moves:
            self._journal.record(before.path, removed=True, video_id=before.id)
            self._journal.record(new_path, removed=False)
            if self._timer is not None:
                self._timer.written(new_path)
            self._bus.publish(
                "video.removed",
                {"id": before.id, "path": before.path, "moved_to": new_path},
            )
            self._pending_added.append(new_path)

    async def restore_videos(self, videos: Sequence[Video]) -> None:
        await self.inner.restore_videos(videos)
        for video in videos:
            self._journal.record(video.path, removed=False)
            if self._timer is not None:
                self._timer.written(video.path)
            self._pending_added.append(video.path)
        await self._publish_pending_added()

    async def _publish_pending_added(self) -> None:
        paths, self._pending_added = self._pending_added, []
        if not self._bus.wants(("video.added",)):
            return
        for path in paths:
            stored = await self.inner.get_video(path)
            if stored is not None:
                self._bus.publish("video.added", stored)

    async def get_video(self, path: str) -> Video | None:
        return await self.inner.get_video(path)

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        return await self.inner.list_videos(under=under, limit=limit, cursor=cursor)

    async def count_videos(self) -> int:
        return await self.inner.count_videos()

    async def insert_job(self, job: Job) -> Job:
        stored = await self.inner.insert_job(_storable(job))
        self._bus.publish("job.updated", stored)
        return stored

    async def update_job(self, job: Job) -> None:
        job = _storable(job)
        await self.inner.update_job(job)
        self._bus.publish("job.updated", job)

    async def get_job(self, job_id: int) -> Job | None:
        return await self.inner.get_job(job_id)

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        return await self.inner.list_jobs(status=status, limit=limit)

    async def unfinished_jobs(self) -> list[Job]:
        return await self.inner.unfinished_jobs()

    async def count_jobs(self) -> dict[str, int]:
        return await self.inner.count_jobs()

    async def requeue_interrupted_jobs(self) -> int:
        return await self.inner.requeue_interrupted_jobs()

    async def prune_jobs(self, *, finished_before: float, keep: int) -> int:
        return await self.inner.prune_jobs(finished_before=finished_before, keep=keep)


def _storable(job: Job) -> Job:
    """Return ``job`` with its result and error in a form JSON and SQLite accept.

    A scan's result lists files by path, and a name that is not valid UTF-8
    (a ``str`` with surrogate escapes) makes both the JSON encoder and
    SQLite's text binding raise. Such strings take their wire form (see
    :func:`reelwatch.protocol.to_wire`), which keeps the exact bytes.
    """
    try:
        msgspec.json.encode(job.result)
        if job.error is not None:
            job.error.encode("utf-8")
    except UnicodeEncodeError:
        return msgspec.structs.replace(
            job,
            result=None if job.result is None else to_wire(dict(job.result)),
            error=None if job.error is None else to_wire(job.error),
        )
    return job


# ---------------------------------------------------------------------------
# Event source decorator


class ObservedEventSource:
    """An :class:`EventSource` wrapper that counts events and publishes root states.

    Each changed path is handed to the :class:`ChangeTimer`, so the catalog
    write that follows can be timed.
    """

    def __init__(
        self,
        inner: EventSource,
        *,
        bus: EventBus,
        metrics: DaemonMetrics,
        timer: ChangeTimer,
    ) -> None:
        self.inner = inner
        self._bus = bus
        self._metrics = metrics
        self._timer = timer

    async def watch(
        self, roots: Sequence[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        batches = self.inner.watch(roots, stop_event)
        # aclosing is no cancel scope, so yielding inside it is safe.
        async with contextlib.aclosing(batches):  # type: ignore[type-var]
            async for batch in batches:
                for change in batch.changes:
                    self._metrics.events_seen.inc(kind=change.kind.value)
                    self._timer.seen(change.path)
                for _ in batch.rescan:
                    self._metrics.events_seen.inc(kind="rescan")
                for status in batch.roots:
                    self._bus.publish("root.state", status)
                yield batch


# ---------------------------------------------------------------------------
# Sync


class SyncTimeoutError(DaemonError):
    """Raised when a ``sync`` read cannot see every change settle in time."""

    code = -32005
    reason = "sync_timeout"


class Synchronizer:
    """Makes a read wait until the changes made before it are in the catalog.

    The roots are read-only to the daemon, so instead of writing a marker file
    and waiting for its event, a sync runs a user-priority incremental scan
    of the request's scope. That scan finds every change already on disk. The
    sync then waits for the files it found still being written: they must
    settle and be scanned again.

    Args:
        queue: where the scan jobs go.
        settling: returns the files that wait to settle.
    """

    def __init__(self, *, queue: JobQueue, settling: Callable[[], list[str]]) -> None:
        self._queue = queue
        self._settling = settling

    async def sync(
        self, scopes: Sequence[str], *, recursive: bool, timeout_s: float
    ) -> None:
        """Scan ``scopes`` and wait until their changes have settled.

        Raises:
            SyncTimeoutError: ``timeout_s`` passed first; the message names
                what was still in progress.
        """
        waiting_for = "the scan of " + ", ".join(scopes)
        with anyio.move_on_after(timeout_s) as deadline:
            jobs = [
                await self._queue.submit(
                    JobKind.SCAN, scope, recursive=recursive, priority=Priority.USER
                )
                for scope in scopes
            ]
            await self._wait_jobs([job.id for job in jobs])
            first_id = min(job.id for job in jobs)
            while True:
                busy = await self._unsettled(scopes, first_id)
                if not busy:
                    return
                waiting_for = "files still being written: " + ", ".join(busy[:5])
                await anyio.sleep(_SYNC_POLL_MAX_S / 2)

        assert deadline.cancelled_caught
        raise SyncTimeoutError(
            f"sync timed out after {timeout_s:g} s waiting for {waiting_for}; "
            "retry with a longer sync_timeout_s, or read without sync"
        )

    async def _wait_jobs(self, job_ids: list[int]) -> None:
        delay = _SYNC_POLL_S
        for job_id in job_ids:
            while not (await self._queue.get(job_id)).status.is_finished:
                await anyio.sleep(delay)
                delay = min(delay * 1.5, _SYNC_POLL_MAX_S)

    async def _unsettled(self, scopes: Sequence[str], first_id: int) -> list[str]:
        """Return the files in ``scopes`` still settling or queued for a scan."""
        settling = [
            path
            for path in self._settling()
            if any(is_same_or_under(path, scope) for scope in scopes)
        ]
        if settling:
            return settling
        busy = []
        for state in (JobState.PENDING, JobState.RUNNING):
            for job in await self._queue.list(status=state, limit=_PAGE):
                # Jobs queued since this sync began rescan files that the sync's
                # own scan saw changing; older ones cover nothing it missed.
                if job.id >= first_id and any(
                    is_same_or_under(job.path, scope) for scope in scopes
                ):
                    busy.append(job.path)
        return busy


# ---------------------------------------------------------------------------
# Reads built on the journal


async def list_changes(
    journal: ChangeJournal,
    repository: Repository,
    *,
    since: str,
    under: str | None,
    limit: int,
) -> VideosListResult:
    """Return the catalog changes after ``since`` as a ``videos.list`` result.

    Changed paths come with their current record; a path whose entry went
    away meanwhile is listed as removed.

    Raises:
        InvalidParamsError: ``since`` is not a journal cursor.
    """
    changes = journal.since(since, under=under, limit=limit)
    result = VideosListResult(
        videos=[],
        cursor=changes.cursor,
        more=changes.more,
        fresh_instance=changes.fresh_instance,
    )
    for entry in changes.entries:
        video = None if entry.removed else await repository.get_video(entry.path)
        if video is None:
            result.removed.append(RemovedVideo(id=entry.video_id, path=entry.path))
        else:
            result.videos.append(video)
    return result


async def find_video(repository: Repository, paths: Sequence[str]) -> Video:
    """Return the entry of the first of ``paths`` in the catalog.

    Raises:
        NotFoundError: none of them has an entry.
    """
    for path in paths:
        video = await repository.get_video(path)
        if video is not None:
            return video
    raise NotFoundError(
        f"no catalog entry for {paths[0]!r}: it does not exist, has no video "
        "extension, is ignored, or was not scanned yet; retry with sync to "
        "scan it first"
    )
