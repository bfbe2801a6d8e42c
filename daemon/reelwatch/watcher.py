"""Filesystem events turned into background scan jobs.

An :class:`EventSource` (here :class:`WatchfilesSource`) only reports what
changed, and :class:`Watcher` decides what to scan. So another source (for
example one in the Rust core that reports queue overflows) can replace
:class:`WatchfilesSource` without other changes.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import anyio
import anyio.to_thread
import structlog
import watchfiles

from .config import Config
from .core import Core
from .jobs import JobQueue
from .models import JobKind, RootState, RootStatus
from .root_identity import RootIdentities, root_problem
from .scanner import has_video_extension, is_ignored, root_for

__all__ = [
    "Change",
    "ChangeKind",
    "EventSource",
    "WatchBatch",
    "Watcher",
    "WatchfilesSource",
]

log = structlog.get_logger(__name__)

# More changed paths than this in one folder become one scan of the folder.
_COALESCE_THRESHOLD = 32


class ChangeKind(enum.StrEnum):
    """The kind of change reported for a path."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


class Change(NamedTuple):
    """One changed path."""

    kind: ChangeKind
    path: str


@dataclass(frozen=True)
class WatchBatch:
    """One delivery from an event source.

    ``changes`` is an unordered set of changed paths. ``rescan`` lists trees
    whose events may have been lost, which must be scanned whole. ``roots``
    carries the new state of each root whose state changed. ``moves`` lists
    the ``(old, new)`` pairs of files or folders renamed inside the watched
    roots, when the source can pair the two halves of a rename. An empty
    batch is a heartbeat.
    """

    changes: frozenset[Change] = frozenset()
    rescan: tuple[str, ...] = ()
    roots: tuple[RootStatus, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()


class EventSource(Protocol):
    """A stream of change batches for a set of roots."""

    def watch(
        self, roots: Sequence[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        """Yield batches until ``stop_event`` is set.

        The first batch reports the state of every root.
        """
        ...


class WatchfilesSource:
    """An :class:`EventSource` built on ``watchfiles.awatch``.

    Roots that do not exist are reported ``missing`` and checked again every
    ``root_check_interval_s``. When the set of existing roots changes, the
    watch restarts, and each root that came back is reported for a rescan. An
    error from watchfiles marks the roots ``error``. The watch then restarts
    after ``retry_delay_s`` with a rescan, because events were lost.

    Args:
        ignore_globs: path components matching one of these produce no events.
        force_polling: poll instead of using inotify; roots report ``polling``.
        poll_delay_ms: the polling interval.
        root_check_interval_s: how often missing or removed roots are checked;
            also the heartbeat interval.
        retry_delay_s: wait before restarting after a watcher error.
    """

    def __init__(
        self,
        *,
        ignore_globs: Sequence[str] = (),
        force_polling: bool = False,
        poll_delay_ms: int = 300,
        root_check_interval_s: float = 5.0,
        retry_delay_s: float = 5.0,
    ) -> None:
        self._ignore_globs = tuple(ignore_globs)
        self._force_polling = force_polling
        self._poll_delay_ms = poll_delay_ms
        self._root_check_interval_s = root_check_interval_s
        self._retry_delay_s = retry_delay_s

    async def watch(
        self, roots: Sequence[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        reported: dict[str, RootStatus] = {}
        needs_rescan: set[str] = set()
        while not stop_event.is_set():
            existing = await anyio.to_thread.run_sync(_existing_dirs, roots)
            statuses = [self._status_of(root, root in existing) for root in roots]
            changed = tuple(s for s in statuses if reported.get(s.path) != s)
            came_back = tuple(
                s.path
                for s in changed
                if s.path in reported and reported[s.path].state == RootState.MISSING
            )
            reported.update((s.path, s) for s in statuses)
            rescan = tuple(sorted(needs_rescan.intersection(existing))) + came_back
            needs_rescan.clear()
            if changed or rescan:
                yield WatchBatch(rescan=rescan, roots=changed)

            if not existing:
                with anyio.move_on_after(self._root_check_interval_s):
                    await stop_event.wait()
                continue

            try:
                async for batch in self._watch_existing(roots, existing, stop_event):
                    yield batch
            except (OSError, RuntimeError) as exc:
                # watchfiles raises OSError subclasses for setup failures and
                # RuntimeError (WatchfilesRustInternalError) when notify fails.
                log.warning("watch_failed", roots=existing, error=str(exc))
                error = f"watching failed: {exc}; retrying in {self._retry_delay_s} s"
                for root in existing:
                    reported[root] = RootStatus(
                        path=root, state=RootState.ERROR, error=error
                    )
                yield WatchBatch(roots=tuple(reported[root] for root in existing))
                needs_rescan.update(existing)
                with anyio.move_on_after(self._retry_delay_s):
                    await stop_event.wait()

    def _status_of(self, root: str, exists: bool) -> RootStatus:
        if not exists:
            return RootStatus(
                path=root,
                state=RootState.MISSING,
                error="the folder does not exist or is not a directory",
            )
        state = RootState.POLLING if self._force_polling else RootState.WATCHING
        return RootStatus(path=root, state=state)

    async def _watch_existing(
        self, roots: Sequence[str], existing: list[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        def is_watched_path(_change: watchfiles.Change, path: str) -> bool:
            root = root_for(path, existing)
            return root is not None and not is_ignored(path, root, self._ignore_globs)

        # No task group or cancel scope may stay open across a yield of this
        # generator, because the consumer resumes it from its own scopes.
        # awatch closes its own scopes before each yield.
        changes = watchfiles.awatch(
            *existing,
            stop_event=stop_event,
            watch_filter=is_watched_path,
            yield_on_timeout=True,
            rust_timeout=int(self._root_check_interval_s * 1000),
            force_polling=self._force_polling,
            poll_delay_ms=self._poll_delay_ms,
            recursive=True,
        )
        async with contextlib.aclosing(changes):
            async for raw in changes:
                if raw:
                    yield WatchBatch(changes=_convert(raw))
                    continue
                # A heartbeat: restart when a root appeared or vanished.
                now_existing = await anyio.to_thread.run_sync(_existing_dirs, roots)
                if now_existing != existing:
                    break
                yield WatchBatch()


_CHANGE_KINDS = {
    watchfiles.Change.added: ChangeKind.ADDED,
    watchfiles.Change.modified: ChangeKind.MODIFIED,
    watchfiles.Change.deleted: ChangeKind.DELETED,
}


def _convert(raw: set[tuple[watchfiles.Change, str]]) -> frozenset[Change]:
    return frozenset(Change(_CHANGE_KINDS[kind], path) for kind, path in raw)


SubmitScan = Callable[[str, bool], object]


@dataclass
class _Targets:
    """Paths to scan, collected from one batch."""

    files: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)


class Watcher:
    """Turns event batches into background scan jobs and root state updates.

    * A deleted path is scanned (which removes its entries); it may have been
      a folder, so this does not depend on its extension.
    * An added or modified file with a video extension is scanned; a new
      folder is scanned whole.
    * Paths that resolve outside every allowed root (through a symlink) are
      dropped.
    * Many changes in one folder become one scan of that folder.

    * A paired rename inside the roots moves the catalog entries first
      (through ``on_move``), so they keep their ``id``; both places are then
      scanned.

    Args:
        source: where the batches come from.
        queue: where scan jobs go; it coalesces jobs for the same path.
        core: checks that changed paths stay inside the roots.
        config: roots, extensions and ignore globs.
        on_root_status: called with each root state the source reports.
        on_move: called with ``(old, new, root of new)`` for each rename
            whose both ends are inside the roots, before the scans are queued.
    """

    def __init__(
        self,
        *,
        source: EventSource,
        queue: JobQueue,
        core: Core,
        config: Config,
        on_root_status: Callable[[RootStatus], None],
        on_move: Callable[[str, str, str], Awaitable[object]] | None = None,
        root_identities: RootIdentities | None = None,
    ) -> None:
        self._source = source
        self._root_identities = root_identities or RootIdentities()
        # The last state the source reported, and the roots found replaced
        # by a symlink, whose state is ``error`` whatever the source reports.
        self._source_states: dict[str, RootStatus] = {}
        self._replaced: dict[str, str] = {}
        self._queue = queue
        self._core = core
        self._roots = config.allowed_scan_roots
        self._extensions = config.scan.extensions
        self._ignore = config.scan.ignore_globs
        self._on_root_status = on_root_status
        self._on_move = on_move

    async def run(
        self,
        stop_event: anyio.Event,
        *,
        on_ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Consume batches until ``stop_event`` is set or the source ends.

        ``on_ready`` is awaited once, after the first batch: the source sends
        it when its watches are in place, so a scan queued then misses no
        change.
        """
        async for batch in self._source.watch(self._roots, stop_event):
            # One worker-thread call per batch for both filesystem checks:
            # each hop to a thread and back adds to every change's latency.
            problems, directories = await anyio.to_thread.run_sync(
                self._inspect, self._candidates(batch)
            )
            for status, rescan in self._root_updates(batch.roots, problems):
                log.info("root_state", root=status.path, state=status.state.value)
                self._on_root_status(status)
                if rescan:
                    # A scan of a missing or replaced root marks its entries
                    # offline, and one of a restored root brings them back.
                    await self._submit(status.path, recursive=True)
            if on_ready is not None:
                await on_ready()
                on_ready = None
            for path in batch.rescan:
                if root_for(path, self._replaced) is not None:
                    continue
                log.info("rescan_needed", path=path)
                await self._submit(path, recursive=True)
            changes = set(batch.changes)
            for old, new in batch.moves:
                changes.update(await self._handle_move(old, new))
            if changes:
                await self._queue_scans(frozenset(changes), directories)

    def _candidates(self, batch: WatchBatch) -> list[str]:
        """Return the added or modified paths of ``batch`` that may be scanned."""
        paths = [path for kind, path in batch.changes if kind != ChangeKind.DELETED]
        paths += [new for _old, new in batch.moves]
        return [
            path
            for path in paths
            if (root := root_for(path, self._roots)) is not None
            and not is_ignored(path, root, self._ignore)
        ]

    def _inspect(self, candidates: Sequence[str]) -> tuple[dict[str, str], set[str]]:
        """Check every root's identity and find the folders among ``candidates``.

        Every batch, heartbeats included, checks that each root is still the
        configured folder, because a source may follow a symlink that
        replaced a root and go on reporting it ``watching``. Runs in a worker
        thread, since a stat can block on a slow filesystem.
        """
        return self._root_identities.problems(self._roots), _directories(candidates)

    def _root_updates(
        self, reported: Sequence[RootStatus], problems: dict[str, str]
    ) -> list[tuple[RootStatus, bool]]:
        """Return the root states to publish, each with whether to scan the root."""
        self._source_states.update((status.path, status) for status in reported)
        updates = [
            (status, status.state == RootState.MISSING)
            for status in reported
            if status.path not in problems and status.path not in self._replaced
        ]
        for root, problem in problems.items():
            if self._replaced.get(root) != problem:
                self._replaced[root] = problem
                error = RootStatus(path=root, state=RootState.ERROR, error=problem)
                updates.append((error, True))
        for root in [root for root in self._replaced if root not in problems]:
            del self._replaced[root]
            status = self._source_states.get(root)
            if status is not None:
                updates.append((status, True))
        return updates

    async def _handle_move(self, old: str, new: str) -> list[Change]:
        """Move the entries of a rename and return the changes still to scan."""
        old_root = root_for(old, self._roots)
        new_root = root_for(new, self._roots)
        if new_root is not None and is_ignored(new, new_root, self._ignore):
            new_root = None  # renamed to an ignored name, like "x.mkv.part"
        if (
            self._on_move is not None
            and old_root is not None
            and new_root is not None
            and not is_ignored(old, old_root, self._ignore)
        ):
            # NOTE: a scan job of the old or new folder that is already
            # running is not held back while the entries move. When it wins,
            # the files are cataloged again under new ids; none is lost.
            await self._on_move(old, new, new_root)
            log.debug("rename_applied", old_path=old, path=new)
        return [Change(ChangeKind.DELETED, old), Change(ChangeKind.ADDED, new)]

    async def handle_changes(self, changes: frozenset[Change]) -> None:
        """Queue the scans that a set of changes calls for."""
        await self._queue_scans(changes, None)

    async def _queue_scans(
        self, changes: frozenset[Change], directories: set[str] | None
    ) -> None:
        """Queue the scans for ``changes``.

        ``directories`` contains the folders among the added and modified paths
        when the caller already looked them up; otherwise they are looked up
        here.
        """
        targets = await self._targets(changes, directories)
        for parent, paths in _group_by_parent(targets.files).items():
            if len(paths) > _COALESCE_THRESHOLD:
                targets.trees.add(parent)
                targets.files.difference_update(paths)
        trees = _drop_nested(targets.trees)
        for tree in trees:
            await self._submit(tree, recursive=True)
        for path in sorted(targets.files):
            if not any(path.startswith(tree + os.sep) for tree in trees):
                await self._submit(path, recursive=False)

    async def _targets(
        self, changes: frozenset[Change], directories: set[str] | None
    ) -> _Targets:
        targets = _Targets()
        candidates = []
        for kind, path in changes:
            root = root_for(path, self._roots)
            if root is None or root in self._replaced:
                continue
            if is_ignored(path, root, self._ignore):
                continue
            if kind == ChangeKind.DELETED:
                targets.files.add(path)
            else:
                candidates.append(path)

        if not candidates:
            return targets
        is_dir = directories
        if is_dir is None:
            is_dir = await anyio.to_thread.run_sync(_directories, candidates)
        scannable = [
            path
            for path in candidates
            if path in is_dir or has_video_extension(path, self._extensions)
        ]
        for check in await self._core.check_paths(scannable, self._roots):
            if check.error_kind == "outside_roots":
                log.debug("change_outside_roots", path=check.path)
            elif check.path in is_dir:
                targets.trees.add(check.path)
            else:
                # Includes not_found: the file went away again, and its scan
                # removes the entry.
                targets.files.add(check.path)
        return targets

    async def _submit(self, path: str, *, recursive: bool) -> None:
        job = await self._queue.submit(JobKind.SCAN, path, recursive=recursive)
        log.debug("change_queued", path=path, job_id=job.id, recursive=recursive)


def _existing_dirs(roots: Sequence[str]) -> list[str]:
    # A root replaced by a symlink is not watched: it leads outside.
    return [root for root in roots if os.path.isdir(root) and not root_problem(root)]


def _directories(paths: Sequence[str]) -> set[str]:
    # os.path.isdir follows symlinks; the containment check after this decides
    # whether a symlinked folder may be scanned.
    return {path for path in paths if os.path.isdir(path)}


def _group_by_parent(paths: set[str]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        groups[os.path.dirname(path)].add(path)
    return groups


def _drop_nested(trees: set[str]) -> list[str]:
    kept: list[str] = []
    for tree in sorted(trees):
        if not any(tree.startswith(parent + os.sep) for parent in kept):
            kept.append(tree)
    return kept
