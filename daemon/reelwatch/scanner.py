"""The scan job: bring the catalog entries under one path in line with the disk.

A scan walks a directory (or takes one file), compares each file's size,
mtime_ns, ctime_ns, inode and device with the catalog, and probes only the new
or changed files, in batches. A file is recorded only when a stat taken before
its probe and one taken after agree. Otherwise it is still being written, so
it is retried after the settle period. Entries under the scanned path that are
no longer on disk are removed, except under a directory the walk could not
read.

A file whose container ends early is kept without an error and retried after
the settle period. If it is still cut short and unchanged then, it is
recorded with an ``incomplete`` error and probed again when it changes.

A new path whose device and inode belong to an entry whose own path is gone
is a moved file: the entry takes the new path and keeps its ``id``. Entries
removed by a scan are remembered for a while (:class:`RemovedEntries`), so a
move is recognised whichever of the two scans, of the old or of the new
place, runs first.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Container,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import msgspec
import structlog

from .config import Config
from .core import (
    Core,
    KnownFiles,
    ProbeResult,
    WalkEntry,
    WalkError,
    WalkResult,
)
from .errors import PathNotAllowedError, single_error
from .jobs import JobContext
from .models import Video
from .repository import (
    FileState,
    Repository,
    StateRow,
    is_same_or_under,
    state_of_row,
)
from .root_identity import RootIdentities

__all__ = [
    "FileError",
    "RemovedEntries",
    "ScanResult",
    "Scanner",
    "SettleTracker",
    "has_video_extension",
    "is_ignored",
    "normalize_path",
    "root_for",
]

log = structlog.get_logger(__name__)

# Per-file errors kept in a job's result; error_count has the full number.
_MAX_ERRORS_IN_RESULT = 100

# How long a removed entry can still be claimed by its file under a new path.
# The scans of the old and the new place of a moved folder are queued from the
# same event batch, so they normally run seconds apart.
_MOVE_WINDOW_S = 120.0

Clock = Callable[[], float]

# Files of one folder that settle together become one folder scan from this
# many on. Below it, the folder scan's re-stat of the other files in the
# folder can cost more than the jobs it saves.
_GROUP_MIN_FILES = 8


class FileError(msgspec.Struct, frozen=True):
    """A file the scan could not probe or read, with the core's error kind."""

    path: str
    kind: str
    message: str


class ScanResult(msgspec.Struct, kw_only=True):
    """The summary a scan job stores as its ``result``.

    * ``scanned``: video files found.
    * ``new``, ``updated``, ``removed``: catalog entries changed.
    * ``moved``: entries that followed their file to a new path.
    * ``probed``: files whose headers were read.
    * ``skipped``: unchanged files that were not probed again.
    * ``settling``: files still being written, which are retried later.
    * ``incomplete``: files whose container ends early.
    * ``error_count``: files with an error; ``errors`` lists the first 100.
    * ``notes``: why a scan of one path found nothing to catalog (not found,
      ignored, not a video extension).
    """

    path: str
    scanned: int = 0
    new: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    probed: int = 0
    skipped: int = 0
    settling: int = 0
    incomplete: int = 0
    error_count: int = 0
    errors: list[FileError] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    def add_error(self, error: FileError) -> None:
        """Count an error and keep its details while the list is short."""
        self.error_count += 1
        if len(self.errors) < _MAX_ERRORS_IN_RESULT:
            self.errors.append(error)


@dataclass
class _Moves:
    """The progress of one scan's move detection."""

    root: str
    on_disk: Container[str]
    known: dict[str, FileState]
    result: ScanResult
    # Entries given to a new path, by id; each is taken at most once.
    claimed: set[int] = field(default_factory=set)
    adopted_paths: set[str] = field(default_factory=set)
    # Adopted paths whose entry had an error or was incomplete.
    reprobe: set[str] = field(default_factory=set)


class _Identity(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int


class _PathInspection(NamedTuple):
    """The root check and the stat of a scan's path, taken before any walk."""

    root_problem: str | None
    mode: int | None
    stat_error: OSError | None
    identity: _Identity | None


def normalize_path(path: str) -> str:
    """Collapse repeated separators and ``.``/``..`` parts, without any I/O."""
    return os.path.normpath(path)


def root_for(path: str, roots: Iterable[str]) -> str | None:
    """Return the root that contains ``path`` (by whole components), or None."""
    for root in roots:
        if is_same_or_under(path, root):
            return root
    return None


def is_ignored(path: str, root: str, globs: Sequence[str]) -> bool:
    """Tell whether any component of ``path`` below ``root`` matches an ignore glob."""
    relative = os.path.relpath(path, root)
    if relative == ".":
        return False
    return any(
        fnmatch.fnmatchcase(part, glob)
        for part in relative.split(os.sep)
        for glob in globs
    )


def has_video_extension(path: str, extensions: Collection[str]) -> bool:
    """Tell whether the file name ends in one of ``extensions`` (case-insensitive)."""
    _, dot, extension = os.path.basename(path).rpartition(".")
    return bool(dot) and extension.lower() in extensions


class SettleTracker:
    """Files waiting for their writes to stop; each gets a scan job when due.

    Files of one folder that become due together, at least
    ``_GROUP_MIN_FILES`` of them, get one scan of the folder instead, when
    the folder has no subfolder (a folder scan walks the whole subtree).

    Args:
        submit: queues a non-recursive scan of one file or folder; called
            once the wait of the files in it ends.
    """

    def __init__(self, submit: Callable[[str], Awaitable[object]]) -> None:
        self._submit = submit
        self._due: dict[str, float] = {}
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._due)

    @property
    def paths(self) -> list[str]:
        """The files waiting, in path order."""
        return sorted(self._due)

    def defer(self, path: str, delay_s: float) -> None:
        """Scan ``path`` again after ``delay_s`` seconds, replacing an earlier wait."""
        self._due[path] = anyio.current_time() + max(delay_s, 0.0)
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Submit the due scans until cancelled."""
        while True:
            if not self._due:
                await self._changed.wait()
                continue
            now = anyio.current_time()
            due = sorted(path for path, at in self._due.items() if at <= now)
            groups = await anyio.to_thread.run_sync(_group_settled, due)
            for target, paths in groups.items():
                await self._submit(target)
                for path in paths:
                    # A new defer() during the submit keeps its later time.
                    if self._due.get(path, now + 1) <= now:
                        del self._due[path]
            if not due:
                wait_s = min(self._due.values()) - now
                with anyio.move_on_after(wait_s):
                    await self._changed.wait()


class RemovedEntries:
    """Entries deleted in the last few minutes, by ``(device, inode)``.

    A moved folder produces a scan of its old place, which deletes the
    entries, and a scan of its new place. When the deletion runs first, the
    new scan finds the entries here and restores them with their ``id``.
    The memory is lost on restart; a move made while the daemon is stopped
    gives new ids.
    """

    def __init__(self, window_s: float = _MOVE_WINDOW_S) -> None:
        self._window_s = window_s
        self._by_id: dict[int, tuple[float, Video]] = {}
        self._ids_by_key: dict[tuple[int, int], set[int]] = {}
        self._ids_by_content: dict[tuple[int, str], set[int]] = {}
        self._content_of: dict[int, tuple[int, str]] = {}
        # How many remembered entries with a fingerprint have each size, by
        # device.
        self._sizes: dict[int, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(
        self, videos: Iterable[Video], fingerprints: Mapping[int, str] | None = None
    ) -> None:
        """Remember deleted entries until the window ends.

        ``fingerprints`` maps entry ids to their content fingerprints, which
        find a file moved to another filesystem.
        """
        self.prune()
        expires = anyio.current_time() + self._window_s
        for video in videos:
            self.claim(video.id)
            self._by_id[video.id] = (expires, video)
            self._ids_by_key.setdefault((video.device, video.inode), set()).add(
                video.id
            )
            fingerprint = (fingerprints or {}).get(video.id)
            if fingerprint is not None:
                content = (video.size, fingerprint)
                self._content_of[video.id] = content
                self._ids_by_content.setdefault(content, set()).add(video.id)
                devices = self._sizes.setdefault(video.size, {})
                devices[video.device] = devices.get(video.device, 0) + 1

    def candidates(self, key: tuple[int, int]) -> list[Video]:
        """Return the remembered entries with this ``(device, inode)``."""
        return self._live(self._ids_by_key.get(key, set()))

    def with_content(self, size: int, fingerprint: str) -> list[Video]:
        """Return the remembered entries with this size and content fingerprint."""
        return self._live(self._ids_by_content.get((size, fingerprint), set()))

    def has_size(self, size: int, *, not_on_device: int) -> bool:
        """Tell whether a remembered entry with a fingerprint has this size.

        Entries on ``not_on_device`` do not count: a file moved within one
        filesystem keeps its inode and is found by that instead.
        """
        return any(device != not_on_device for device in self._sizes.get(size, ()))

    def _live(self, ids: set[int]) -> list[Video]:
        if not ids:
            return []  # the common case, asked once per new file of a scan
        now = anyio.current_time()
        found = []
        for video_id in sorted(ids):
            expires, video = self._by_id[video_id]
            if expires > now:
                found.append(video)
        return found

    def claim(self, video_id: int) -> None:
        """Forget the entry with ``video_id``, which now lives under a new path."""
        item = self._by_id.pop(video_id, None)
        if item is None:
            return
        key = (item[1].device, item[1].inode)
        ids = self._ids_by_key[key]
        ids.discard(video_id)
        if not ids:
            del self._ids_by_key[key]
        content = self._content_of.pop(video_id, None)
        if content is not None:
            same_content = self._ids_by_content[content]
            same_content.discard(video_id)
            if not same_content:
                del self._ids_by_content[content]
            devices = self._sizes[content[0]]
            devices[item[1].device] -= 1
            if not devices[item[1].device]:
                del devices[item[1].device]
            if not devices:
                del self._sizes[content[0]]

    def prune(self) -> None:
        """Forget every entry whose window has ended."""
        now = anyio.current_time()
        expired = [i for i, (expires, _) in self._by_id.items() if expires <= now]
        for video_id in expired:
            self.claim(video_id)


class Scanner:
    """The handler of scan jobs.

    Args:
        repository: the catalog.
        core: probes, walks and path checks.
        config: roots, extensions, ignore globs, settle time, batch size.
        settle: where files that are still being written are parked.
        clock: the wall clock (Unix seconds), compared with file mtimes.
        removed: recently deleted entries that a moved file may claim.
        root_identities: checks, before each scan, that the root was not
            replaced by a symlink leading outside it.
    """

    def __init__(
        self,
        *,
        repository: Repository,
        core: Core,
        config: Config,
        settle: SettleTracker,
        clock: Clock = time.time,
        removed: RemovedEntries | None = None,
        root_identities: RootIdentities | None = None,
    ) -> None:
        self._repository = repository
        self._core = core
        self._settle = settle
        self._clock = clock
        self._removed = removed if removed is not None else RemovedEntries()
        self._root_identities = root_identities or RootIdentities()
        # When each waiting file was first seen with its current stat.
        self._first_seen: dict[str, tuple[_Identity, float]] = {}
        # Files a scan is probing or about to record, across concurrent scans.
        self._in_flight: set[str] = set()
        # Serializes take-overs, so two scans running at the same time never
        # give one new path two old entries.
        self._take_over_lock = anyio.Lock()
        self.probes_total = 0
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Use a new configuration (after a reload) for the scans that start next."""
        self._config = config
        self._roots = config.allowed_scan_roots
        self._extensions = config.scan.extensions
        self._ignore = config.scan.ignore_globs

    async def __call__(self, context: JobContext) -> dict[str, Any]:
        job = context.job
        result = await self.scan(
            job.path, recursive=bool(job.params.get("recursive", True)), context=context
        )
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]

    async def scan(
        self, path: str, *, recursive: bool = True, context: JobContext | None = None
    ) -> ScanResult:
        """Bring the catalog entries at and under ``path`` in line with the disk.

        Raises:
            PathNotAllowedError: ``path`` is not inside an allowed scan root.
        """
        path = normalize_path(path)
        root = root_for(path, self._roots)
        if root is None:
            raise PathNotAllowedError(
                f"cannot scan {path}: it is not inside an allowed scan root "
                f"({', '.join(self._roots)})"
            )

        result = ScanResult(path=path)
        may_be_video = not is_ignored(path, root, self._ignore) and has_video_extension(
            path, self._extensions
        )
        inspection = await anyio.to_thread.run_sync(
            self._inspect, root, path, self._roots, may_be_video
        )
        problem = inspection.root_problem
        if problem is not None:
            # Nothing under the root is walked or probed: it now leads outside.
            offline = await self._repository.set_offline(root, True)
            log.warning(
                "root_replaced", root=root, error=problem, entries_offline=offline
            )
            result.add_error(FileError(root, "outside_roots", problem))
            return result

        exc = inspection.stat_error
        if exc is not None:
            # A symlink loop, a name too long, a folder without search
            # permission: the entries stay, as under an unreadable folder.
            error = FileError(path, _error_kind(exc), f"cannot stat the path: {exc}")
            result.add_error(error)
            log.warning("scan_path_unreadable", path=path, error=str(exc))
            return result
        mode = inspection.mode
        if mode is None:
            await self._handle_missing(path, root, result)
            note = f"not_found: {path} does not exist"
            if result.removed:
                note += f"; {result.removed} catalog entries under it were removed"
            result.notes.append(note)
            log.info("scan_path_not_found", path=path, removed=result.removed)
            return result

        if stat.S_ISDIR(mode) and recursive:
            await self._recheck_tree(path, root, result, context)
        else:
            if stat.S_ISDIR(mode):
                walk, known = await self._walk_and_read(path, recursive)
            else:
                walk = self._single_file(path, root, mode, inspection.identity, result)
                known = await self._repository.file_states(path)
            await self._reconcile(path, root, walk, known, recursive, result, context)
        log.info(
            "scan_finished",
            path=path,
            scanned=result.scanned,
            new=result.new,
            updated=result.updated,
            removed=result.removed,
            moved=result.moved,
            probed=result.probed,
            skipped=result.skipped,
            settling=result.settling,
            errors=result.error_count,
        )
        return result

    async def _handle_missing(self, path: str, root: str, result: ScanResult) -> None:
        if path == root:
            # An unmounted drive or a deleted root keeps its entries, marked
            # offline, so they come back unchanged with the root.
            offline = await self._repository.set_offline(root, True)
            log.warning("root_missing", root=root, entries_marked_offline=offline)
            return
        if not await anyio.to_thread.run_sync(os.path.isdir, root):
            # The path vanished with its root (a drive unplugged, a folder
            # deleted): keep the entries until the root is back.
            await self._repository.set_offline(path, True)
            return
        # Remembered before the delete, so that a concurrent scan of the new
        # place finds each entry in the catalog or here.
        states = await self._repository.file_states(path)
        videos = await self._repository.videos_under(path)
        self._removed.add(videos, _fingerprints_by_id(videos, states))
        result.removed = await self._repository.delete_videos_under(path)

    async def _delete(self, paths: Sequence[str], known: dict[str, FileState]) -> int:
        videos = [
            video
            for video in [await self._repository.get_video(path) for path in paths]
            if video is not None
        ]
        self._removed.add(videos, _fingerprints_by_id(videos, known))
        return await self._repository.delete_videos(paths)

    async def _recheck_tree(
        self, path: str, root: str, result: ScanResult, context: JobContext | None
    ) -> None:
        """Reconcile the whole tree under ``path``, converting only what changed.

        The core compares the walk with the catalog's rows, so that the
        files of an unchanged tree never become Python objects, and only the
        rows of changed or missing files become :class:`FileState` tuples.
        """

        async def read() -> KnownFiles:
            rows = await self._repository.state_rows(path)
            return KnownFiles(rows, _stale_rows(rows))

        comparison = await self._core.walk_compared(
            path,
            extensions=self._extensions,
            ignore=self._ignore,
            allowed_roots=self._roots,
            read_known=read,
        )
        rows: Sequence[StateRow] = comparison.known.rows  # type: ignore[assignment]
        known = dict(state_of_row(rows[index]) for index in comparison.missing)
        missing = set(known)
        changed_paths = {entry.path for entry in comparison.changed}
        if changed_paths:
            wanted = {os.fsencode(path) for path in changed_paths}
            known.update(state_of_row(row) for row in rows if row[0] in wanted)
        walk = WalkResult(comparison.changed, comparison.errors, comparison.dirs)
        on_disk = _OnDisk(changed_paths, missing, rows)
        await self._reconcile(
            path,
            root,
            walk,
            known,
            True,
            result,
            context,
            unchanged=comparison.unchanged,
            on_disk=on_disk,
        )

    async def _walk_and_read(
        self, path: str, recursive: bool
    ) -> tuple[WalkResult, dict[str, FileState]]:
        """Walk ``path`` and read its catalog entries at the same time.

        The walk runs in the core without the GIL and the read on the
        catalog's thread, so on a re-check of an unchanged tree each hides
        most of the other's time.
        """
        known: dict[str, FileState] = {}

        async def read() -> None:
            known.update(await self._repository.file_states(path))

        with single_error():
            async with anyio.create_task_group() as group:
                group.start_soon(read)
                walk = await self._walk(path, recursive)
        return walk, known

    async def _walk(self, path: str, recursive: bool) -> WalkResult:
        walk = await self._core.walk(
            path,
            extensions=self._extensions,
            ignore=self._ignore,
            allowed_roots=self._roots,
        )
        if recursive:
            return walk
        direct = [entry for entry in walk.files if os.path.dirname(entry.path) == path]
        return WalkResult(direct, walk.errors, walk.dirs)

    def _inspect(
        self, root: str, path: str, roots: Sequence[str], may_be_video: bool
    ) -> _PathInspection:
        """Check the root and stat ``path`` in one worker-thread call.

        The identity is taken only for a regular file when ``may_be_video`` is
        true, so a single-file scan needs no other worker-thread call.
        """
        problem = self._root_identities.check(root)
        if problem is not None:
            return _PathInspection(problem, None, None, None)
        try:
            mode = _stat_mode(path)
        except OSError as exc:
            return _PathInspection(None, None, exc, None)
        identity = None
        if may_be_video and mode is not None and stat.S_ISREG(mode):
            identity = _stat_identity(path, roots)
        return _PathInspection(None, mode, None, identity)

    def _single_file(
        self,
        path: str,
        root: str,
        mode: int,
        identity: _Identity | None,
        result: ScanResult,
    ) -> WalkResult:
        """Return the walk of one file, with the reason when it is not cataloged."""
        if is_ignored(path, root, self._ignore):
            globs = ", ".join(self._ignore)
            reason = f"ignored: {path} matches an ignore glob ({globs})"
        elif not has_video_extension(path, self._extensions):
            reason = f"not a video extension: {path}"
        elif not stat.S_ISREG(mode):
            # The same error a folder scan reports for this file.
            message = f"not a regular file ({_describe_file_type(mode)}); skipped"
            return WalkResult([], [WalkError(path, "not_a_file", message)], 0)
        else:
            reason = ""
        if reason:
            result.notes.append(reason)
            log.debug("scan_path_skipped", path=path, reason=reason)
            return WalkResult([], [], 0)
        if identity is None:
            return WalkResult([], [], 0)
        return WalkResult([WalkEntry(path, *identity)], [], 0)

    async def _reconcile(
        self,
        path: str,
        root: str,
        walk: WalkResult,
        known: dict[str, FileState],
        recursive: bool,
        result: ScanResult,
        context: JobContext | None,
        *,
        unchanged: int = 0,
        on_disk: Container[str] | None = None,
    ) -> None:
        """Probe, adopt and delete what differs between ``walk`` and ``known``.

        ``unchanged`` counts walked files left out of ``walk.files`` because
        they match the catalog. ``on_disk`` then contains the paths the walk
        listed, in place of the paths of ``walk.files``.
        """
        unreadable_dirs = []
        for error in walk.errors:
            result.add_error(FileError(error.path, error.kind, error.message))
            if error.kind != "outside_roots":
                # What was under an unreadable folder may still exist.
                unreadable_dirs.append(error.path)

        result.scanned = len(walk.files) + unchanged
        result.skipped += unchanged
        if on_disk is None:
            on_disk = {entry.path for entry in walk.files}
        to_probe = self._select_for_probe(walk.files, known, result)
        new_files = [entry for entry in to_probe if entry.path not in known]
        # Content fingerprints computed during this scan, by path.
        digests: dict[str, str] = {}
        if new_files:
            moves = _Moves(root, on_disk, known, result)
            await self._adopt_moved(new_files, moves)
            unmatched = [e for e in new_files if e.path not in moves.adopted_paths]
            await self._adopt_copied(unmatched, moves, digests)
            done = moves.adopted_paths - moves.reprobe
            to_probe = [entry for entry in to_probe if entry.path not in done]
        await self._probe_all(root, to_probe, known, result, context, digests)

        deleted = [
            known_path
            for known_path in known
            if known_path not in on_disk
            and (recursive or os.path.dirname(known_path) == path or known_path == path)
            and not any(is_same_or_under(known_path, bad) for bad in unreadable_dirs)
        ]
        # NOTE: only a scan of the mount point itself recognises an unmounted
        # drive. A scan of a folder above it deletes the drive's entries.
        if deleted and not result.scanned and await self._looks_unmounted(path, known):
            offline = await self._repository.set_offline(path, True)
            log.warning(
                "filesystem_unmounted", path=path, entries_marked_offline=offline
            )
            return
        if deleted:
            result.removed += await self._delete(deleted, known)
        # A FIFO or device named like a video is reported but says nothing
        # about whether the root's folders could be read.
        unread = [error for error in walk.errors if error.kind != "not_a_file"]
        if path == root and not unread:
            await self._repository.set_offline(root, False)

    async def _looks_unmounted(self, path: str, known: dict[str, FileState]) -> bool:
        """Tell whether an empty ``path`` is a mount point whose drive is gone.

        An unmounted drive leaves its empty mount point folder behind, on
        another device than the entries. Deleting the entries then would wipe
        the catalog of a drive that was only unplugged.
        """
        device = await anyio.to_thread.run_sync(_device_of, path)
        return device is not None and all(s.device != device for s in known.values())

    async def _adopt_moved(self, new_files: Sequence[WalkEntry], moves: _Moves) -> None:
        """Give new paths the entries of the same files under an old path.

        A candidate is an entry with the same device, inode, size and mtime
        whose own path no longer has that inode. When another cataloged
        path still has the inode (a hard link), the new path gets its own
        entry instead.
        """
        keys = [(entry.device, entry.inode) for entry in new_files]
        stored = await self._repository.videos_with_inodes(keys)
        by_key: dict[tuple[int, int], list[Video]] = {}
        for video in stored:
            if video.path not in moves.on_disk:
                by_key.setdefault((video.device, video.inode), []).append(video)
        live_elsewhere: set[str] = set()
        if stored:
            live_elsewhere = await anyio.to_thread.run_sync(
                _paths_holding_inode,
                [(video.path, video.device, video.inode) for video in stored],
            )

        for entry in new_files:
            key = (entry.device, entry.inode)
            cataloged = [v for v in stored if (v.device, v.inode) == key]
            if any(
                v.path in live_elsewhere and v.path != entry.path for v in cataloged
            ):
                continue  # a hard link: never a move
            candidates = [
                video
                for video in by_key.get(key, []) + self._removed.candidates(key)
                if video.id not in moves.claimed
                and video.size == entry.size
                and video.mtime_ns == entry.mtime_ns
            ]
            if candidates:
                await self._take_over(_closest(candidates, entry), entry, moves)

    async def _adopt_copied(
        self,
        new_files: Sequence[WalkEntry],
        moves: _Moves,
        digests: dict[str, str],
    ) -> None:
        """Give new paths the entries of files with the same content that are gone.

        A move to another filesystem copies the file and deletes the
        original, so the inode changes. A new file whose size and content
        fingerprint equal those of an entry on another device, whose path no
        longer exists, takes that entry over.
        """
        # Only files whose size an entry on another device has are read.
        sizes: dict[int, set[int]] = {}
        for device in {entry.device for entry in new_files}:
            sizes[device] = await self._repository.fingerprinted_sizes(
                [entry.size for entry in new_files if entry.device == device],
                not_on_device=device,
            )
        sized = [
            entry
            for entry in new_files
            if entry.size > 0
            and (
                entry.size in sizes[entry.device]
                or self._removed.has_size(entry.size, not_on_device=entry.device)
            )
        ]
        if not sized:
            return
        for fingerprint in await self._core.fingerprint([e.path for e in sized]):
            if fingerprint.digest is not None:
                digests[fingerprint.path] = fingerprint.digest

        for entry in sized:
            digest = digests.get(entry.path)
            if digest is None:
                continue
            # One query and one thread call per file, so both are skipped
            # when no stored entry can match: a burst of new copies of one
            # file would otherwise pay them thousands of times.
            stored: list[Video] = []
            if entry.size in sizes[entry.device]:
                stored = [
                    video
                    for video in await self._repository.videos_with_fingerprint(
                        entry.size, digest, not_on_device=entry.device
                    )
                    if video.path not in moves.on_disk and video.path != entry.path
                ]
            exists: set[str] = set()
            if stored:
                exists = await anyio.to_thread.run_sync(
                    _existing_paths, [video.path for video in stored]
                )
            # On one filesystem a move keeps the inode, so equal content
            # there is a copy, not a move.
            candidates = [
                video
                for video in stored + self._removed.with_content(entry.size, digest)
                if video.id not in moves.claimed
                and video.path not in exists
                and video.device != entry.device
            ]
            if candidates:
                old = _closest(candidates, entry)
                await self._take_over(old, entry, moves)
                await self._repository.set_fingerprints([(entry.path, digest)])

    async def _take_over(self, old: Video, entry: WalkEntry, moves: _Moves) -> None:
        """Move the entry ``old`` to the file ``entry``, keeping its ``id``.

        An entry whose probe was complete and without error keeps its media
        fields and needs no new probe; the others are probed again. Nothing
        happens when the catalog already has an entry at the new path: a scan
        running at the same time wrote it after this one read the catalog.
        The file is then checked like any cataloged file.
        """
        async with self._take_over_lock:
            if await self._repository.get_video(entry.path) is not None:
                log.debug("move_already_recorded", path=entry.path, video_id=old.id)
                return
            await self._move_entry(old, entry, moves)

    async def _move_entry(self, old: Video, entry: WalkEntry, moves: _Moves) -> None:
        """Write the take-over of ``old`` by ``entry``; see :meth:`_take_over`."""
        moves.claimed.add(old.id)
        moved = msgspec.structs.replace(
            old,
            path=entry.path,
            root=moves.root,
            size=entry.size,
            mtime_ns=entry.mtime_ns,
            ctime_ns=entry.ctime_ns,
            inode=entry.inode,
            device=entry.device,
            offline=False,
        )
        # The old entry may be deleted by a concurrent scan of its old
        # place after it was read; it is then restored from memory.
        self._removed.claim(old.id)
        if not await self._repository.move_video(old.path, moved):
            await self._repository.restore_videos([moved])
        log.info("file_moved", old_path=old.path, path=entry.path, video_id=old.id)
        moves.result.moved += 1
        moves.adopted_paths.add(entry.path)
        if old.error_kind is not None or old.complete is False:
            moves.reprobe.add(entry.path)
            moves.known[entry.path] = _state_of(moved)

    def _select_for_probe(
        self,
        files: Sequence[WalkEntry],
        known: dict[str, FileState],
        result: ScanResult,
    ) -> list[WalkEntry]:
        # The same test as _is_up_to_date, written out because it runs once
        # per file of every re-check. Slices compare the identity without
        # building an _Identity per file.
        to_probe = []
        skipped = 0
        get_state = known.get
        for entry in files:
            state = get_state(entry[0])
            if (
                state is not None
                and state[:5] == entry[1:]
                and (state.complete is not False or state.error_kind is not None)
                and state.error_kind not in RETRIED_ERROR_KINDS
            ):
                skipped += 1
            else:
                to_probe.append(entry)
        result.skipped += skipped
        return to_probe

    async def _probe_all(
        self,
        root: str,
        entries: Sequence[WalkEntry],
        known: dict[str, FileState],
        result: ScanResult,
        context: JobContext | None,
        digests: dict[str, str],
    ) -> None:
        batch_size = self._config.scan.probe_batch_size
        chunks = [
            entries[start : start + batch_size]
            for start in range(0, len(entries), batch_size)
        ]
        done = 0
        # Batch n is written while batch n+1 is probed: the probe runs on a
        # worker thread and the write on the catalog's thread. At most one
        # write is pending, so memory stays at two batches. Batch n+1 is
        # claimed while batch n is probed, because the claim's catalog read
        # waits for the pending write and would otherwise hold back the
        # probe until that write ends.
        written = anyio.Event()
        written.set()
        batch: list[WalkEntry] = []
        # Callers expect the error itself (JobCancelledError,
        # StorageError), as from a scan without the pipeline.
        with single_error():
            async with anyio.create_task_group() as writes:
                if chunks:
                    batch = await self._claim_batch(chunks[0], known, result)
                for index, chunk in enumerate(chunks):
                    next_chunk = chunks[index + 1] if index + 1 < len(chunks) else []
                    try:
                        if context is not None:
                            context.raise_if_cancelled()
                            context.set_progress(done, len(entries))
                        videos, next_batch = await self._probe_and_claim(
                            root, batch, next_chunk, known, result, digests
                        )
                        # A failed write cancels this wait. The batch is
                        # then never written, so its claim is released.
                        try:
                            await written.wait()
                        except BaseException:
                            self._in_flight.difference_update(
                                e.path for e in next_batch
                            )
                            raise
                    except BaseException:
                        self._in_flight.difference_update(e.path for e in batch)
                        raise
                    written = anyio.Event()
                    writes.start_soon(
                        self._write_batch, root, batch, videos, digests, written
                    )
                    batch = next_batch
                    done += len(chunk)
        if context is not None and entries:
            context.set_progress(done, len(entries))

    async def _probe_and_claim(
        self,
        root: str,
        batch: Sequence[WalkEntry],
        next_chunk: Sequence[WalkEntry],
        known: dict[str, FileState],
        result: ScanResult,
        digests: dict[str, str],
    ) -> tuple[list[Video], list[WalkEntry]]:
        """Probe ``batch`` and claim ``next_chunk`` at the same time.

        Returns the entries to write and the claimed files of ``next_chunk``.
        When either step fails, the next chunk's claim is released, and the
        caller releases ``batch``.
        """
        next_batch: list[WalkEntry] = []

        async def claim() -> None:
            next_batch.extend(await self._claim_batch(next_chunk, known, result))

        try:
            with single_error():
                async with anyio.create_task_group() as group:
                    if next_chunk:
                        group.start_soon(claim)
                    videos = await self._probe_batch(
                        root, batch, known, result, digests
                    )
        except BaseException:
            self._in_flight.difference_update(entry.path for entry in next_batch)
            raise
        return videos, next_batch

    async def _write_batch(
        self,
        root: str,
        batch: Sequence[WalkEntry],
        videos: Sequence[Video],
        digests: Mapping[str, str],
        written: anyio.Event,
    ) -> None:
        try:
            # A reload may have removed the root while the batch ran.
            if videos and root in self._roots:
                await self._repository.upsert_videos(
                    videos,
                    fingerprints=[
                        (v.path, digests[v.path]) for v in videos if v.path in digests
                    ],
                )
        finally:
            self._in_flight.difference_update(entry.path for entry in batch)
        # Only a write that succeeded lets the next one start. A failed write
        # would otherwise wake the next one before its error cancels the
        # task group, and the second failure would turn the error into a
        # group that callers do not retry.
        written.set()

    async def _claim_batch(
        self,
        entries: Sequence[WalkEntry],
        known: dict[str, FileState],
        result: ScanResult,
    ) -> list[WalkEntry]:
        """Return the ``entries`` that this scan must still probe.

        Two scans can cover one file: a folder scan and the file's own scan,
        queued by the watcher or left pending by a crash. A file that another
        scan is probing right now, or has recorded since this scan began, is
        skipped, so no file is probed twice.
        """
        # Claimed before the first await, so a concurrent scan at the same
        # place in its walk cannot take the same files.
        claimed = [entry for entry in entries if entry.path not in self._in_flight]
        result.skipped += len(entries) - len(claimed)
        self._in_flight.update(entry.path for entry in claimed)
        batch = []
        try:
            stored = await self._repository.file_states_at([e.path for e in claimed])
            for entry in claimed:
                state = stored.get(entry.path)
                if state is not None:
                    identity = _Identity(*entry[1:])
                    if _is_up_to_date(state, identity):
                        self._in_flight.discard(entry.path)
                        result.skipped += 1
                        continue
                    known[entry.path] = state
                batch.append(entry)
        except BaseException:
            self._in_flight.difference_update(entry.path for entry in claimed)
            raise
        return batch

    def _settle_wait_s(self, path: str, identity: _Identity, now_ns: int) -> float:
        """Return how much longer ``path`` must stay unchanged before its probe.

        A file is settled when its mtime is ``settle_s`` old, or when its size,
        mtime and inode have not changed for ``settle_s`` since this scanner
        first saw them (which covers an mtime in the future).
        """
        settle_s = self._config.scan.settle_s
        age_s = (now_ns - identity.mtime_ns) / 1e9
        if age_s >= settle_s:
            # Settled by its mtime alone, the common case of a first index.
            # No clock read is needed, and any earlier sighting is forgotten.
            self._first_seen.pop(path, None)
            return 0.0
        now = anyio.current_time()
        seen = self._first_seen.get(path)
        if seen is None or seen[0] != identity:
            self._first_seen[path] = (identity, now)
            stable_s = 0.0
        else:
            stable_s = now - seen[1]
        remaining = settle_s - max(age_s, stable_s)
        if remaining <= 0:
            self._first_seen.pop(path, None)
            return 0.0
        return min(remaining, settle_s)

    async def _probe_batch(
        self,
        root: str,
        entries: Sequence[WalkEntry],
        known: dict[str, FileState],
        result: ScanResult,
        digests: dict[str, str],
    ) -> list[Video]:
        """Probe one batch and return the entries to write; count everything else.

        The walk's stat is the one taken before the probe. The core returns
        the opened file's stat after its reads, and a file is recorded only
        when the two agree. The content fingerprint of each probed file,
        read through the same descriptor, is added to ``digests``.
        """
        settle_s = self._config.scan.settle_s

        # Files written to within settle_s are not probed yet.
        now_ns = int(self._clock() * 1e9)
        settled = []
        for entry in entries:
            identity = _Identity(*entry[1:])
            wait_s = self._settle_wait_s(entry.path, identity, now_ns)
            if wait_s > 0:
                self._settle.defer(entry.path, wait_s)
                result.settling += 1
            else:
                settled.append((entry.path, identity))

        paths = [path for path, _ in settled]
        probes = await self._core.probe(paths, roots=self._roots, fingerprint=True)
        after = [
            None if p.stat_after is None else _Identity(*p.stat_after) for p in probes
        ]
        await self._check_unopened(paths, probes, after, digests)
        result.probed += len(settled)
        self.probes_total += len(settled)

        videos = []
        probed_at = self._clock()
        for (path, identity), probe, identity_after in zip(
            settled, probes, after, strict=True
        ):
            if identity_after is None:
                # Gone, or no longer inside a root: the removal step or the
                # file's own event handles it.
                self._first_seen.pop(path, None)
                continue
            if identity_after != identity:
                self._settle.defer(path, settle_s)
                result.settling += 1
                continue
            if probe.stat_after is None:
                pass  # fingerprinted by _check_unopened
            elif probe.fingerprint is None:
                digests.pop(path, None)
            else:
                digests[path] = probe.fingerprint
            video = self._record(path, root, identity, probe, known, result, probed_at)
            if video is not None:
                videos.append(video)
        return videos

    async def _check_unopened(
        self,
        paths: Sequence[str],
        probes: Sequence[ProbeResult],
        after: list[_Identity | None],
        digests: dict[str, str],
    ) -> None:
        """Stat and fingerprint the files whose probe returned no stat.

        The core returns none for a file it could not open (gone, unreadable,
        outside the roots); a core without that field returns none at all.
        """
        missing = [i for i, probe in enumerate(probes) if probe.stat_after is None]
        if not missing:
            return
        unopened = [paths[i] for i in missing]
        for fingerprint in await self._core.fingerprint(unopened):
            if fingerprint.digest is None:
                digests.pop(fingerprint.path, None)
            else:
                digests[fingerprint.path] = fingerprint.digest
        stats = await anyio.to_thread.run_sync(_stat_identities, unopened, self._roots)
        for index, identity in zip(missing, stats, strict=True):
            after[index] = identity

    def _record(
        self,
        path: str,
        root: str,
        identity: _Identity,
        probe: ProbeResult,
        known: dict[str, FileState],
        result: ScanResult,
        probed_at: float,
    ) -> Video | None:
        state = known.get(path)
        if probe.error_kind == "not_found":
            return None  # deleted since the stat; the removal step handles it

        error: FileError | None = None
        is_incomplete = probe.error_kind == "incomplete" or (
            probe.ok and not probe.complete
        )
        if is_incomplete:
            result.incomplete += 1
            if _is_waiting_incomplete(state, identity):
                # Unchanged for a whole settle period, so the file was cut
                # short rather than still being written. It is recorded with
                # an error now and probed again when it changes.
                reason = probe.error or "the file ends before its container does"
                error = FileError(
                    path,
                    "incomplete",
                    f"{reason}; the file looks cut short and is probed again "
                    "when it changes",
                )
            else:
                self._settle.defer(path, self._config.scan.settle_s)
        elif not probe.ok:
            error = FileError(path, probe.error_kind or "internal", probe.error or "")
        if error is not None:
            result.add_error(error)

        if state is None:
            result.new += 1
        else:
            result.updated += 1
        return _video_from_probe(
            path, root, identity, probe, is_incomplete, error, probed_at
        )


def _completeness(probe: ProbeResult, is_incomplete: bool) -> bool | None:
    if is_incomplete:
        return False
    if probe.ok:
        return probe.complete
    return None


# Errors that come from the disk or the core rather than from the file's
# content: a repaired disk or a fixed bug leaves the file unchanged, so these
# entries are probed again on every scan instead of only when the file changes.
RETRIED_ERROR_KINDS = frozenset({"io", "internal"})


def _is_up_to_date(state: FileState, identity: _Identity) -> bool:
    """Tell whether the entry describes the file on disk and needs no probe."""
    return (
        identity == _identity_of(state)
        and not _is_waiting_incomplete(state, identity)
        and state.error_kind not in RETRIED_ERROR_KINDS
    )


def _is_waiting_incomplete(state: FileState | None, identity: _Identity) -> bool:
    """Tell whether the entry is an incomplete file, unchanged, still without error."""
    return (
        state is not None
        and state.complete is False
        and state.error_kind is None
        and _identity_of(state) == identity
    )


def _video_from_probe(
    path: str,
    root: str,
    identity: _Identity,
    probe: ProbeResult,
    is_incomplete: bool,
    error: FileError | None,
    probed_at: float,
) -> Video:
    if probe.ok:
        # Built in one call rather than as a base entry plus a copy with the
        # media fields, because this runs once per probed file.
        return Video(
            id=0,
            path=path,
            root=root,
            size=identity.size,
            mtime_ns=identity.mtime_ns,
            ctime_ns=identity.ctime_ns,
            inode=identity.inode,
            device=identity.device,
            complete=_completeness(probe, is_incomplete),
            error=None if error is None else error.message,
            error_kind=None if error is None else error.kind,
            probed_at=probed_at,
            container=probe.container,
            duration_s=probe.duration_s,
            width=probe.width,
            height=probe.height,
            frame_rate=probe.frame_rate,
            video_codec=probe.video_codec,
            audio_codec=probe.audio_codec,
            rotation=probe.rotation,
            video_profile=probe.video_profile,
            audio_channels=probe.audio_channels,
            audio_sample_rate=probe.audio_sample_rate,
            bit_rate=probe.bit_rate,
        )
    return Video(
        id=0,
        path=path,
        root=root,
        size=identity.size,
        mtime_ns=identity.mtime_ns,
        ctime_ns=identity.ctime_ns,
        inode=identity.inode,
        device=identity.device,
        complete=_completeness(probe, is_incomplete),
        error=None if error is None else error.message,
        error_kind=None if error is None else error.kind,
        probed_at=probed_at,
    )


def _stale_rows(rows: Sequence[StateRow]) -> list[int]:
    """Return the indexes of rows that need a probe even when their stat matches.

    The same test as in ``_select_for_probe``: an incomplete file still
    without error, or an entry whose error is retried.
    """
    return [
        index
        for index, row in enumerate(rows)
        if (row[6] == 0 and row[7] is None) or row[7] in RETRIED_ERROR_KINDS
    ]


class _OnDisk:
    """The paths a compared walk listed, from its changed files and the catalog.

    A path is on disk when it is a changed file, or has a catalog row that
    the walk did not report missing.
    """

    def __init__(
        self, changed: set[str], missing: set[str], rows: Sequence[StateRow]
    ) -> None:
        self._changed = changed
        self._missing = missing
        self._rows = rows
        self._row_paths: set[bytes] | None = None

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str) or path in self._missing:
            return False
        if path in self._changed:
            return True
        if self._row_paths is None:
            # Built only for move detection, which looks up paths that may
            # lie anywhere in the catalog.
            self._row_paths = {row[0] for row in self._rows}
        return os.fsencode(path) in self._row_paths


def _state_of(video: Video) -> FileState:
    return FileState(
        video.size,
        video.mtime_ns,
        video.ctime_ns,
        video.inode,
        video.device,
        video.complete,
        video.error_kind,
    )


def _closest(candidates: Sequence[Video], entry: WalkEntry) -> Video:
    """Prefer the candidate with the same file name, then the first by path."""
    name = os.path.basename(entry.path)
    return min(candidates, key=lambda v: (os.path.basename(v.path) != name, v.path))


def _existing_paths(paths: Sequence[str]) -> set[str]:
    return {path for path in paths if os.path.lexists(path)}


def _fingerprints_by_id(
    videos: Sequence[Video], states: Mapping[str, FileState]
) -> dict[int, str]:
    fingerprints = {}
    for video in videos:
        state = states.get(video.path)
        if state is not None and state.fingerprint is not None:
            fingerprints[video.id] = state.fingerprint
    return fingerprints


def _paths_holding_inode(entries: Sequence[tuple[str, int, int]]) -> set[str]:
    """Return the paths that still exist and still have the given device and inode."""
    live = set()
    for path, device, inode in entries:
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_dev == device and info.st_ino == inode:
            live.add(path)
    return live


def _identity_of(state: FileState) -> _Identity:
    return _Identity(
        state.size, state.mtime_ns, state.ctime_ns, state.inode, state.device
    )


def _device_of(path: str) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _group_settled(paths: Sequence[str]) -> dict[str, list[str]]:
    """Map each scan target to the settled files it covers.

    A folder with ``_GROUP_MIN_FILES`` or more of ``paths`` and no subfolder
    is one target; every other file is its own target.
    """
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    targets: dict[str, list[str]] = {}
    for folder, files in by_folder.items():
        if len(files) >= _GROUP_MIN_FILES and not _has_subfolder(folder):
            targets[folder] = files
        else:
            targets.update((path, [path]) for path in files)
    return targets


def _has_subfolder(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            # A symlink to a folder counts: the walk follows it.
            return any(entry.is_dir() for entry in entries)
    except OSError:
        return True  # unreadable or gone: scan the files one by one


def _stat_mode(path: str) -> int | None:
    """Return the mode of the file ``path`` leads to, or None when it does not exist.

    Raises:
        OSError: any other failure, such as a symlink loop or a name too long.
    """
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _error_kind(exc: OSError) -> str:
    """Return the core's error kind for an OS error, as a folder scan reports it."""
    if isinstance(exc, PermissionError):
        return "permission_denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "invalid_path"
    return "io"


def _describe_file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _stat_identity(path: str, roots: Sequence[str]) -> _Identity | None:
    """Stat the file ``path`` leads to; return None when it is outside ``roots``.

    A plain stat follows a symlink swapped in at the last moment and would
    put an outside file's size, times and inode into the catalog. An O_PATH
    descriptor pins one file without opening its contents (no FIFO wait, no
    device side effect), so its real path and its stat describe the same file.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        # Gone or unreadable: the probe reports the reason for this file.
        return None
    try:
        real_path = os.readlink(f"/proc/self/fd/{fd}")
        if root_for(real_path, roots) is None:
            return None
        info = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _Identity(
        info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev
    )


def _stat_identities(
    paths: Sequence[str], roots: Sequence[str]
) -> list[_Identity | None]:
    return [_stat_identity(path, roots) for path in paths]
