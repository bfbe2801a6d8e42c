"""The catalog and job store: a Protocol, SQLite and in-memory implementations.

Paths are stored as BLOBs holding ``os.fsencode(path)``, so file names that are
not valid UTF-8 survive a round trip (Python sees them as ``str`` with
surrogate escapes, as :func:`os.fsdecode` makes them). BLOBs compare byte by byte, which
gives a stable path order for pagination and lets a prefix query select the
entries under a directory by whole components.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import operator
import os
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import aiosqlite
import anyio
import msgspec
import structlog

from .errors import InvalidParamsError, StorageError
from .models import Job, JobState, Progress, Video, VideoPage

__all__ = [
    "SCHEMA_VERSION",
    "FileState",
    "MemoryRepository",
    "Repository",
    "SQLiteRepository",
    "StateRow",
    "decode_cursor",
    "encode_cursor",
    "is_same_or_under",
    "state_of_row",
]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2

_FINISHED_STATES = tuple(state.value for state in JobState if state.is_finished)
_CURSOR_PREFIX = "p1."
_INT64_SPAN = 1 << 64
_INT64_MAX = (1 << 63) - 1
# os.fsencode and os.fsdecode without their per-call checks, because the
# catalog converts every path of a scan. str.encode and bytes.decode with
# these arguments give the same results.
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


class FileState(NamedTuple):
    """A cataloged file's stored identity, which the scanner compares with the disk."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int
    complete: bool | None
    error_kind: str | None
    fingerprint: str | None = None


# (path as os.fsencode returns it, size, mtime_ns, ctime_ns, inode, device,
# complete as 0, 1 or None, error_kind, fingerprint), as the catalog stores
# an entry's state.
StateRow = tuple[bytes, int, int, int, int, int, int | None, str | None, str | None]


def state_of_row(row: StateRow) -> tuple[str, FileState]:
    """Convert a row of :meth:`Repository.state_rows` to its path and state."""
    path, size, mtime_ns, ctime_ns, inode, device, complete, kind, digest = row
    state = FileState(
        size,
        mtime_ns,
        ctime_ns,
        inode,
        device,
        None if complete is None else bool(complete),
        kind,
        digest,
    )
    return _decode_path(path), state


class Repository(Protocol):
    """Storage for catalog entries and job rows.

    Every path argument is an absolute, normalized path. Writes that take a
    sequence run in one transaction.
    """

    @property
    def storage_error(self) -> str | None:
        """The error of the last failed write, or None once a write succeeds."""
        ...

    async def open(self) -> None:
        """Open the store, creating or migrating its schema.

        Raises:
            StorageError: the store cannot be opened or is from a newer version.
        """
        ...

    async def close(self) -> None:
        """Close the store; further calls fail."""
        ...

    async def file_states(self, under: str) -> dict[str, FileState]:
        """Return the state of every entry at or under ``under``, keyed by path."""
        ...

    async def file_states_at(self, paths: Sequence[str]) -> dict[str, FileState]:
        """Return the states of the entries at ``paths``, keyed by path."""
        ...

    async def state_rows(self, under: str) -> list[StateRow]:
        """Return the state of every entry at or under ``under`` as raw rows.

        For callers that convert only a few rows, with :func:`state_of_row`.
        """
        ...

    async def upsert_videos(
        self,
        videos: Sequence[Video],
        *,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Insert or replace entries by path, keeping the ``id`` of existing ones.

        The ``id`` of each argument is ignored; new entries get a fresh one.
        ``fingerprints`` are then stored as :meth:`set_fingerprints` does, in
        the same transaction.
        """
        ...

    async def delete_videos(self, paths: Sequence[str]) -> int:
        """Delete the entries with exactly these paths and return how many went."""
        ...

    async def delete_videos_under(self, under: str) -> int:
        """Delete the entry at ``under`` and every entry below it."""
        ...

    async def set_offline(self, under: str, offline: bool) -> int:
        """Mark the entries at or under ``under`` offline (or back online)."""
        ...

    async def get_video(self, path: str) -> Video | None:
        """Return the entry for ``path``, or None."""
        ...

    async def videos_under(self, under: str) -> list[Video]:
        """Return every entry at or under ``under``, in path order."""
        ...

    async def videos_with_inodes(self, keys: Sequence[tuple[int, int]]) -> list[Video]:
        """Return the entries whose ``(device, inode)`` is one of ``keys``."""
        ...

    async def move_video(self, old_path: str, video: Video) -> bool:
        """Give the entry at ``old_path`` the path and fields of ``video``.

        The entry keeps its ``id``; an entry already at the new path is
        replaced. Returns False when no entry has ``old_path``.
        """
        ...

    async def move_tree(self, old: str, new: str, root: str) -> int:
        """Rename the entries at and under ``old`` to the same places under ``new``.

        Entries keep their ``id``; ``root`` becomes their root. Entries already
        at or under ``new`` are replaced. Returns how many entries moved.
        """
        ...

    async def set_fingerprints(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        """Store the content fingerprint (hex) of each ``(path, fingerprint)``.

        Writing an entry with :meth:`upsert_videos` clears its fingerprint.
        """
        ...

    async def videos_with_fingerprint(
        self, size: int, fingerprint: str, *, not_on_device: int | None = None
    ) -> list[Video]:
        """Return the entries with this size and content fingerprint.

        With ``not_on_device``, entries on that device are left out.
        """
        ...

    async def fingerprinted_sizes(
        self, sizes: Sequence[int], *, not_on_device: int
    ) -> set[int]:
        """Return which ``sizes`` an entry with a fingerprint has on another device."""
        ...

    async def restore_videos(self, videos: Sequence[Video]) -> None:
        """Insert entries with the ``id`` they carry, replacing any at their paths.

        For entries that were deleted and then found again under a new path,
        so that they keep their identity.
        """
        ...

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        """Return up to ``limit`` entries in path order after ``cursor``.

        Raises:
            InvalidParamsError: ``cursor`` was not produced by this store.
        """
        ...

    async def count_videos(self) -> int:
        """Return the number of catalog entries."""
        ...

    async def insert_job(self, job: Job) -> Job:
        """Store a new job and return it with its assigned ``id``."""
        ...

    async def update_job(self, job: Job) -> None:
        """Overwrite the stored job that has ``job.id``."""
        ...

    async def get_job(self, job_id: int) -> Job | None:
        """Return the job with ``job_id``, or None."""
        ...

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        """Return up to ``limit`` jobs, newest first, optionally only in ``status``."""
        ...

    async def unfinished_jobs(self) -> list[Job]:
        """Return every pending or running job, oldest first."""
        ...

    async def count_jobs(self) -> dict[str, int]:
        """Return the number of jobs in each state (every state, zeros included)."""
        ...

    async def requeue_interrupted_jobs(self) -> int:
        """Put jobs left ``running`` (by a crash) back to ``pending``."""
        ...

    async def prune_jobs(self, *, finished_before: float, keep: int) -> int:
        """Delete old finished jobs and return how many went.

        A finished job goes when it ended before ``finished_before`` (Unix
        seconds) or when ``keep`` newer finished jobs exist.
        """
        ...


def is_same_or_under(path: str, directory: str) -> bool:
    """Tell whether ``path`` is ``directory`` or below it, by whole components."""
    path_bytes = _encode_path(path)
    dir_bytes = _directory_prefix(directory)
    return path_bytes == dir_bytes or path_bytes.startswith(_children_prefix(dir_bytes))


def encode_cursor(path: str) -> str:
    """Make the opaque ``videos.list`` cursor that resumes after ``path``."""
    token = base64.urlsafe_b64encode(_encode_path(path)).decode("ascii")
    return _CURSOR_PREFIX + token.rstrip("=")


def decode_cursor(cursor: str) -> bytes:
    """Return the path bytes a cursor resumes after.

    Raises:
        InvalidParamsError: the cursor was not made by :func:`encode_cursor`.
    """
    if not cursor.startswith(_CURSOR_PREFIX):
        raise _invalid_cursor(cursor)
    token = cursor.removeprefix(_CURSOR_PREFIX)
    try:
        padded = token + "=" * (-len(token) % 4)
        path = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_cursor(cursor) from None
    if not path.startswith(b"/"):
        raise _invalid_cursor(cursor)
    return path


def _invalid_cursor(cursor: str) -> InvalidParamsError:
    return InvalidParamsError(
        f"invalid cursor {cursor!r}: pass the next_cursor of a previous "
        "videos.list result, or omit it to start from the beginning"
    )


def _encode_path(path: str) -> bytes:
    return path.encode(_FS_ENCODING, _FS_ERRORS)


def _decode_path(path: bytes) -> str:
    return path.decode(_FS_ENCODING, _FS_ERRORS)


def _directory_prefix(directory: str) -> bytes:
    encoded = _encode_path(directory)
    stripped = encoded.rstrip(b"/")
    return stripped if stripped else b"/"


def _children_prefix(dir_bytes: bytes) -> bytes:
    return dir_bytes if dir_bytes.endswith(b"/") else dir_bytes + b"/"


def _children_upper_bound(dir_bytes: bytes) -> bytes:
    # Every child starts with "<dir>/"; "0" is the byte after "/", so
    # "<dir>0" bounds them from above in BLOB (memcmp) order.
    prefix = _children_prefix(dir_bytes)
    return prefix[:-1] + b"0"


def _to_int64(value: int) -> int:
    # st_ino and st_dev are unsigned 64-bit; SQLite integers are signed.
    return value - _INT64_SPAN if value > _INT64_MAX else value


def _from_int64(value: int) -> int:
    return value + _INT64_SPAN if value < 0 else value


# Each entry upgrades the schema from version N (its index) to N + 1.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE videos (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path BLOB NOT NULL UNIQUE,
        root BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        device INTEGER NOT NULL,
        container TEXT,
        duration_s REAL,
        width INTEGER,
        height INTEGER,
        frame_rate TEXT,
        video_codec TEXT,
        audio_codec TEXT,
        error TEXT,
        error_kind TEXT,
        rotation INTEGER,
        video_profile TEXT,
        audio_channels INTEGER,
        audio_sample_rate INTEGER,
        bit_rate INTEGER,
        complete INTEGER,
        offline INTEGER NOT NULL DEFAULT 0,
        probed_at REAL
    );
    CREATE INDEX videos_device_inode ON videos (device, inode);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        path BLOB NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        params TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        result TEXT,
        error TEXT,
        progress_done INTEGER,
        progress_total INTEGER
    );
    CREATE INDEX jobs_status_id ON jobs (status, id);
    """,
    # The partial-content digest (hex) of each file's last probe, which
    # recognises a file moved to another filesystem.
    """
    ALTER TABLE videos ADD COLUMN fingerprint TEXT;
    CREATE INDEX videos_size_fingerprint ON videos (size, fingerprint);
    """,
)

# Column order of the videos table after "id" and "path"; the SQL below and
# _video_row / _video_from_row all follow it.
_VIDEO_COLUMNS = (
    "root",
    "size",
    "mtime_ns",
    "ctime_ns",
    "inode",
    "device",
    "container",
    "duration_s",
    "width",
    "height",
    "frame_rate",
    "video_codec",
    "audio_codec",
    "error",
    "error_kind",
    "rotation",
    "video_profile",
    "audio_channels",
    "audio_sample_rate",
    "bit_rate",
    "complete",
    "offline",
    "probed_at",
)
_VIDEO_SELECT = "SELECT id, path, " + ", ".join(_VIDEO_COLUMNS) + " FROM videos"
_STATE_SELECT = (
    "SELECT path, size, mtime_ns, ctime_ns, inode, device, complete, "
    "error_kind, fingerprint FROM videos"
)
_VIDEO_UPSERT = (
    "INSERT INTO videos (path, "
    + ", ".join(_VIDEO_COLUMNS)
    + ") VALUES (?"
    + ", ?" * len(_VIDEO_COLUMNS)
    + ") ON CONFLICT (path) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _VIDEO_COLUMNS)
    + ", fingerprint = NULL"
)
_JOB_COLUMNS = (
    "id, kind, path, status, priority, params, created_at, started_at, "
    "finished_at, result, error, progress_done, progress_total"
)


def _video_row(video: Video) -> tuple[Any, ...]:
    return (
        _encode_path(video.path),
        _encode_path(video.root),
        video.size,
        video.mtime_ns,
        video.ctime_ns,
        _to_int64(video.inode),
        _to_int64(video.device),
        video.container,
        video.duration_s,
        video.width,
        video.height,
        video.frame_rate,
        video.video_codec,
        video.audio_codec,
        video.error,
        video.error_kind,
        video.rotation,
        video.video_profile,
        video.audio_channels,
        video.audio_sample_rate,
        video.bit_rate,
        None if video.complete is None else int(video.complete),
        int(video.offline),
        video.probed_at,
    )


def _video_from_row(row: Sequence[Any]) -> Video:
    (video_id, path, root, size, mtime_ns, ctime_ns, inode, device) = row[:8]
    (container, duration_s, width, height, frame_rate, video_codec) = row[8:14]
    (audio_codec, error, error_kind, rotation, video_profile) = row[14:19]
    (audio_channels, audio_sample_rate, bit_rate, complete, offline) = row[19:24]
    probed_at = row[24]
    return Video(
        id=video_id,
        path=_decode_path(path),
        root=_decode_path(root),
        size=size,
        mtime_ns=mtime_ns,
        ctime_ns=ctime_ns,
        inode=_from_int64(inode),
        device=_from_int64(device),
        container=container,
        duration_s=duration_s,
        width=width,
        height=height,
        frame_rate=frame_rate,
        video_codec=video_codec,
        audio_codec=audio_codec,
        error=error,
        error_kind=error_kind,
        rotation=rotation,
        video_profile=video_profile,
        audio_channels=audio_channels,
        audio_sample_rate=audio_sample_rate,
        bit_rate=bit_rate,
        complete=None if complete is None else bool(complete),
        offline=bool(offline),
        probed_at=probed_at,
    )


def _job_from_row(row: Sequence[Any]) -> Job:
    (job_id, kind, path, status, priority, params, created_at) = row[:7]
    (started_at, finished_at, result, error, progress_done, progress_total) = row[7:]
    progress = None
    if progress_done is not None and progress_total is not None:
        progress = Progress(done=progress_done, total=progress_total)
    return Job(
        id=job_id,
        kind=kind,
        path=os.fsdecode(path),
        status=JobState(status),
        priority=priority,
        params=msgspec.json.decode(params),
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        result=None if result is None else msgspec.json.decode(result),
        error=error,
        progress=progress,
    )


def _job_values(job: Job) -> tuple[Any, ...]:
    return (
        job.kind,
        _encode_path(job.path),
        job.status.value,
        job.priority,
        msgspec.json.encode(job.params).decode(),
        job.created_at,
        job.started_at,
        job.finished_at,
        None if job.result is None else msgspec.json.encode(job.result).decode(),
        job.error,
        job.progress.done if job.progress else None,
        job.progress.total if job.progress else None,
    )


class SQLiteRepository:
    """The production store: one SQLite file in WAL mode, through aiosqlite.

    One connection serves every call, and a lock keeps one transaction from
    interleaving with another task's statements. Writes are shielded from
    cancellation, so a cancelled job never leaves half a batch behind.
    """

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()
        self._write_error: str | None = None

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def storage_error(self) -> str | None:
        return self._write_error

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            os.makedirs(os.path.dirname(self._path) or ".", mode=0o700, exist_ok=True)
            self._db = await aiosqlite.connect(self._path, isolation_level=None)
            await self._db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._check_integrity()
            await self._migrate()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StorageError(
                f"cannot open the catalog database {self._path}: {exc}; check that "
                "state_dir is writable and the file is a reelwatch database"
            ) from exc
        except StorageError:
            await self.close()
            raise
        log.info("catalog_opened", path=self._path, schema_version=SCHEMA_VERSION)

    async def close(self) -> None:
        if self._db is None:
            return
        db, self._db = self._db, None
        with anyio.CancelScope(shield=True):
            await db.close()

    async def _migrate(self) -> None:
        db = self._connection()
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"the catalog database {self._path} has schema version {version}, "
                f"but this reelwatch supports up to {SCHEMA_VERSION}; upgrade "
                "reelwatch or point state_dir at another folder"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            script = _MIGRATIONS[target - 1]
            # executescript commits first, so each step is its own transaction
            # that also records the new version.
            await db.executescript(
                f"BEGIN; {script}; PRAGMA user_version = {target}; COMMIT;"
            )
            log.info("catalog_migrated", path=self._path, schema_version=target)

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError(
                f"the catalog database {self._path} is not open; call open() first"
            )
        return self._db

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            try:
                async with self._connection().execute(sql, params) as cursor:
                    return list(await cursor.fetchall())
            except sqlite3.Error as exc:
                raise self._storage_error(exc) from exc

    async def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> int:
        """Run statements in one transaction and return the rows they changed."""
        changed = 0
        with anyio.CancelScope(shield=True):
            async with self._lock:
                db = self._connection()
                try:
                    await db.execute("BEGIN IMMEDIATE")
                    # Each call crosses to the connection's thread and back,
                    # so a run of one statement goes as one executemany;
                    # its rowcount is the sum over the run.
                    for sql, run in itertools.groupby(statements, key=_sql_of):
                        cursor = await db.executemany(sql, [p for _, p in run])
                        changed += max(cursor.rowcount, 0)
                        await cursor.close()
                    await db.execute("COMMIT")
                except sqlite3.Error as exc:
                    # A failed BEGIN (locked database) leaves nothing to undo.
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise self._failed_write(exc) from exc
        # A transaction that changed nothing may commit without writing, so
        # only a real change shows that storage works again.
        if changed:
            self._write_error = None
        return changed

    def _failed_write(self, exc: sqlite3.Error) -> StorageError:
        error = self._storage_error(exc)
        self._write_error = str(error)
        return error

    def _storage_error(self, exc: sqlite3.Error) -> StorageError:
        # sqlite_errorcode is the extended code; its low byte is the primary one.
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        hint = _ERROR_HINTS.get(code, "")
        return StorageError(f"catalog database {self._path}: {exc}{hint}")

    async def _check_integrity(self) -> None:
        # quick_check reads every page and record but, unlike integrity_check,
        # does not compare indexes with their tables, so it costs about one
        # read of the file.
        try:
            async with self._connection().execute("PRAGMA quick_check(5)") as cur:
                problems = [str(row[0]) for row in await cur.fetchall()]
        except sqlite3.DatabaseError as exc:
            # A page damaged badly enough stops the check itself.
            problems = [str(exc)]
        if problems != ["ok"]:
            raise StorageError(
                f"the catalog database {self._path} failed its integrity check: "
                f"{'; '.join(problems)}; restore it from a backup, or move it "
                "away and restart reelwatch to build a new catalog"
            )

    async def file_states(self, under: str) -> dict[str, FileState]:
        where, params = _under_clause(under)
        rows = await self._fetchall(f"{_STATE_SELECT} WHERE {where}", params)
        return _states_from_rows(rows)

    async def state_rows(self, under: str) -> list[StateRow]:
        where, params = _under_clause(under)
        rows = await self._fetchall(f"{_STATE_SELECT} WHERE {where}", params)
        # SQLite integers are signed: an inode or device at or above 2**63
        # was stored negative.
        return [
            row if row[4] >= 0 and row[5] >= 0 else _unsigned_state_row(row)
            for row in rows
        ]

    async def file_states_at(self, paths: Sequence[str]) -> dict[str, FileState]:
        states: dict[str, FileState] = {}
        keys = sorted({_encode_path(path) for path in paths})
        # Stay below SQLite's default limit of 32,766 host parameters.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await self._fetchall(
                f"{_STATE_SELECT} WHERE path IN ({marks})", chunk
            )
            states.update(_states_from_rows(rows))
        return states

    async def upsert_videos(
        self,
        videos: Sequence[Video],
        *,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> None:
        # In path order, which SQLite's index on path writes fastest. The
        # first column of a row is the encoded path.
        rows = sorted(map(_video_row, videos), key=operator.itemgetter(0))
        statements: list[tuple[str, Sequence[Any]]] = [
            (_VIDEO_UPSERT, row) for row in rows
        ]
        statements += _fingerprint_updates(fingerprints)
        await self._write(statements)

    async def delete_videos(self, paths: Sequence[str]) -> int:
        ordered = sorted(_encode_path(path) for path in paths)
        return await self._write(
            ("DELETE FROM videos WHERE path = ?", (path,)) for path in ordered
        )

    async def delete_videos_under(self, under: str) -> int:
        where, params = _under_clause(under)
        return await self._write([(f"DELETE FROM videos WHERE {where}", params)])

    async def set_offline(self, under: str, offline: bool) -> int:
        where, params = _under_clause(under)
        return await self._write(
            [
                (
                    f"UPDATE videos SET offline = ? WHERE {where} AND offline != ?",
                    (int(offline), *params, int(offline)),
                )
            ]
        )

    async def get_video(self, path: str) -> Video | None:
        rows = await self._fetchall(
            f"{_VIDEO_SELECT} WHERE path = ?", (_encode_path(path),)
        )
        return _video_from_row(rows[0]) if rows else None

    async def videos_under(self, under: str) -> list[Video]:
        where, params = _under_clause(under)
        rows = await self._fetchall(
            f"{_VIDEO_SELECT} WHERE {where} ORDER BY path", params
        )
        return [_video_from_row(row) for row in rows]

    async def videos_with_inodes(self, keys: Sequence[tuple[int, int]]) -> list[Video]:
        videos: list[Video] = []
        unique = sorted(set(keys))
        # Stay below SQLite's default limit of 32,766 host parameters.
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = " OR ".join("(device = ? AND inode = ?)" for _ in chunk)
            params = [
                value
                for device, inode in chunk
                for value in (_to_int64(device), _to_int64(inode))
            ]
            rows = await self._fetchall(f"{_VIDEO_SELECT} WHERE {marks}", params)
            videos.extend(_video_from_row(row) for row in rows)
        return videos

    async def move_video(self, old_path: str, video: Video) -> bool:
        old = _encode_path(old_path)
        row = _video_row(video)
        changed = await self._write(
            [
                (
                    "DELETE FROM videos WHERE path = ? AND path != ?",
                    (row[0], old),
                ),
                (
                    "UPDATE videos SET path = ?, "
                    + ", ".join(f"{column} = ?" for column in _VIDEO_COLUMNS)
                    + " WHERE path = ?",
                    (*row, old),
                ),
            ]
        )
        return changed > 0

    async def move_tree(self, old: str, new: str, root: str) -> int:
        old_bytes = _directory_prefix(old)
        new_bytes = _directory_prefix(new)
        if old_bytes == new_bytes:
            return 0
        old_where, old_params = _under_clause(old)
        new_where, new_params = _under_clause(new)
        rows = await self._fetchall(
            f"SELECT id, path FROM videos WHERE {old_where}", old_params
        )
        if not rows:
            return 0
        renames = [
            (video_id, new_bytes + bytes(path)[len(old_bytes) :])
            for video_id, path in rows
        ]
        # Each row first gets a path no file can have (absolute paths start
        # with "/"), so the UNIQUE index never contains two rows with one path
        # while a folder moves into a name that overlaps its old one.
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                f"DELETE FROM videos WHERE {new_where} AND NOT {old_where}",
                (*new_params, *old_params),
            ),
        ]
        statements.extend(
            (
                "UPDATE videos SET path = ? WHERE id = ?",
                (b"\x01" + bytes(path), video_id),
            )
            for video_id, path in rows
        )
        statements.extend(
            (
                "UPDATE videos SET path = ?, root = ? WHERE id = ?",
                (path, _encode_path(root), video_id),
            )
            for video_id, path in renames
        )
        await self._write(statements)
        return len(renames)

    async def set_fingerprints(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        await self._write(_fingerprint_updates(fingerprints))

    async def videos_with_fingerprint(
        self, size: int, fingerprint: str, *, not_on_device: int | None = None
    ) -> list[Video]:
        query = f"{_VIDEO_SELECT} WHERE fingerprint = ? AND size = ?"
        params: tuple[object, ...] = (fingerprint, size)
        if not_on_device is not None:
            # Hard links of one file share its content; leaving out the
            # device's own entries keeps a burst of links from matching
            # thousands of rows each.
            query += " AND device != ?"
            params += (_to_int64(not_on_device),)
        rows = await self._fetchall(query, params)
        return [_video_from_row(row) for row in rows]

    async def fingerprinted_sizes(
        self, sizes: Sequence[int], *, not_on_device: int
    ) -> set[int]:
        found: set[int] = set()
        unique = sorted(set(sizes))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT DISTINCT size FROM videos WHERE size IN ({marks}) "
                "AND fingerprint IS NOT NULL AND device != ?",
                (*chunk, _to_int64(not_on_device)),
            )
            found.update(int(row[0]) for row in rows)
        return found

    async def restore_videos(self, videos: Sequence[Video]) -> None:
        ordered = sorted(videos, key=lambda video: _encode_path(video.path))
        statements: list[tuple[str, Sequence[Any]]] = []
        for video in ordered:
            row = _video_row(video)
            statements.append(("DELETE FROM videos WHERE path = ?", (row[0],)))
            statements.append(
                (
                    "INSERT OR REPLACE INTO videos (id, path, "
                    + ", ".join(_VIDEO_COLUMNS)
                    + ") VALUES (?, ?"
                    + ", ?" * len(_VIDEO_COLUMNS)
                    + ")",
                    (video.id, *row),
                )
            )
        await self._write(statements)

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        where, params = ("1 = 1", []) if under is None else _under_clause(under)
        if cursor is not None:
            where += " AND path > ?"
            params.append(decode_cursor(cursor))
        rows = await self._fetchall(
            f"{_VIDEO_SELECT} WHERE {where} ORDER BY path LIMIT ?",
            (*params, limit + 1),
        )
        videos = [_video_from_row(row) for row in rows[:limit]]
        return _page(videos, has_more=len(rows) > limit)

    async def count_videos(self) -> int:
        rows = await self._fetchall("SELECT count(*) FROM videos")
        return int(rows[0][0])

    async def insert_job(self, job: Job) -> Job:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                db = self._connection()
                try:
                    cursor = await db.execute(
                        "INSERT INTO jobs (kind, path, status, priority, params, "
                        "created_at, started_at, finished_at, result, error, "
                        "progress_done, progress_total) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        _job_values(job),
                    )
                    job_id = cursor.lastrowid
                    await cursor.close()
                except sqlite3.Error as exc:
                    raise self._failed_write(exc) from exc
                self._write_error = None
        assert job_id is not None, "sqlite returns a rowid after an INSERT"
        return msgspec.structs.replace(job, id=job_id)

    async def update_job(self, job: Job) -> None:
        await self._write(
            [
                (
                    "UPDATE jobs SET kind = ?, path = ?, status = ?, priority = ?, "
                    "params = ?, created_at = ?, started_at = ?, finished_at = ?, "
                    "result = ?, error = ?, progress_done = ?, progress_total = ? "
                    "WHERE id = ?",
                    (*_job_values(job), job.id),
                )
            ]
        )

    async def get_job(self, job_id: int) -> Job | None:
        rows = await self._fetchall(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        )
        return _job_from_row(rows[0]) if rows else None

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        if status is None:
            rows = await self._fetchall(
                f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self._fetchall(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = ? "
                "ORDER BY id DESC LIMIT ?",
                (status.value, limit),
            )
        return [_job_from_row(row) for row in rows]

    async def unfinished_jobs(self) -> list[Job]:
        rows = await self._fetchall(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN (?, ?) ORDER BY id",
            (JobState.PENDING.value, JobState.RUNNING.value),
        )
        return [_job_from_row(row) for row in rows]

    async def count_jobs(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT status, count(*) FROM jobs GROUP BY status")
        counts = {state.value: 0 for state in JobState}
        counts.update({status: count for status, count in rows})
        return counts

    async def requeue_interrupted_jobs(self) -> int:
        return await self._write(
            [
                (
                    "UPDATE jobs SET status = ?, started_at = NULL, "
                    "progress_done = NULL, progress_total = NULL WHERE status = ?",
                    (JobState.PENDING.value, JobState.RUNNING.value),
                )
            ]
        )

    async def prune_jobs(self, *, finished_before: float, keep: int) -> int:
        marks = ", ".join("?" * len(_FINISHED_STATES))
        return await self._write(
            [
                (
                    f"DELETE FROM jobs WHERE status IN ({marks}) AND finished_at < ?",
                    (*_FINISHED_STATES, finished_before),
                ),
                (
                    f"DELETE FROM jobs WHERE status IN ({marks}) AND id NOT IN "
                    f"(SELECT id FROM jobs WHERE status IN ({marks}) "
                    "ORDER BY id DESC LIMIT ?)",
                    (*_FINISHED_STATES, *_FINISHED_STATES, keep),
                ),
            ]
        )


_ERROR_HINTS = {
    sqlite3.SQLITE_BUSY: (
        "; another process holds a lock on it: stop the other reelwatch or "
        "program that uses this file"
    ),
    sqlite3.SQLITE_FULL: (
        "; the file system of state_dir is full: free space, and the daemon "
        "retries by itself"
    ),
    sqlite3.SQLITE_READONLY: (
        "; the file or state_dir is read-only: make it writable for the daemon"
    ),
    sqlite3.SQLITE_IOERR: (
        "; the file system of state_dir failed a read or write (check the "
        "kernel log; it may have been remounted read-only)"
    ),
}


def _sql_of(statement: tuple[str, Sequence[Any]]) -> str:
    return statement[0]


def _fingerprint_updates(
    fingerprints: Sequence[tuple[str, str]],
) -> list[tuple[str, Sequence[Any]]]:
    return [
        (
            "UPDATE videos SET fingerprint = ? WHERE path = ?",
            (fingerprint, _encode_path(path)),
        )
        for path, fingerprint in sorted(fingerprints)
    ]


def _unsigned_state_row(row: Sequence[Any]) -> StateRow:
    span = _INT64_SPAN
    path, size, mtime_ns, ctime_ns, inode, device, complete, kind, digest = row
    inode += span if inode < 0 else 0
    device += span if device < 0 else 0
    return (path, size, mtime_ns, ctime_ns, inode, device, complete, kind, digest)


def _states_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, FileState]:
    # A re-check reads every row under the scanned folder, so this loop
    # makes no helper call per column.
    span = _INT64_SPAN
    states = {}
    for path, size, mtime_ns, ctime_ns, inode, device, complete, kind, digest in rows:
        states[_decode_path(path)] = FileState(
            size,
            mtime_ns,
            ctime_ns,
            inode + span if inode < 0 else inode,
            device + span if device < 0 else device,
            None if complete is None else bool(complete),
            kind,
            digest,
        )
    return states


def _under_clause(under: str) -> tuple[str, list[Any]]:
    dir_bytes = _directory_prefix(under)
    if dir_bytes == b"/":
        return "1 = 1", []
    return (
        "(path = ? OR (path >= ? AND path < ?))",
        [dir_bytes, _children_prefix(dir_bytes), _children_upper_bound(dir_bytes)],
    )


def _page(videos: list[Video], *, has_more: bool) -> VideoPage:
    next_cursor = encode_cursor(videos[-1].path) if has_more and videos else None
    return VideoPage(videos=videos, next_cursor=next_cursor)


def _copy_job(job: Job) -> Job:
    # A deep copy, so callers never share the stored job's dicts.
    return msgspec.json.decode(msgspec.json.encode(job), type=Job)


class MemoryRepository:
    """A store that keeps everything in dicts; same contract as SQLiteRepository.

    Meant for tests and for running without a state folder. It loses
    everything when the process exits.
    """

    storage_error: str | None = None

    def __init__(self) -> None:
        self._videos: dict[bytes, Video] = {}
        # By video id, which a move keeps.
        self._fingerprints: dict[int, str] = {}
        self._jobs: dict[int, Job] = {}
        self._next_video_id = 1
        self._next_job_id = 1
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("the in-memory catalog is not open; call open() first")

    def _under(self, under: str) -> list[bytes]:
        dir_bytes = _directory_prefix(under)
        if dir_bytes == b"/":
            return sorted(self._videos)
        children = _children_prefix(dir_bytes)
        return sorted(
            key for key in self._videos if key == dir_bytes or key.startswith(children)
        )

    async def file_states(self, under: str) -> dict[str, FileState]:
        self._check_open()
        return self._states(self._under(under))

    async def state_rows(self, under: str) -> list[StateRow]:
        self._check_open()
        rows: list[StateRow] = []
        for key in self._under(under):
            video = self._videos[key]
            complete = None if video.complete is None else int(video.complete)
            rows.append(
                (
                    key,
                    video.size,
                    video.mtime_ns,
                    video.ctime_ns,
                    video.inode,
                    video.device,
                    complete,
                    video.error_kind,
                    self._fingerprints.get(video.id),
                )
            )
        return rows

    async def file_states_at(self, paths: Sequence[str]) -> dict[str, FileState]:
        self._check_open()
        keys = {_encode_path(path) for path in paths}
        return self._states(sorted(key for key in keys if key in self._videos))

    def _states(self, keys: Iterable[bytes]) -> dict[str, FileState]:
        states = {}
        for key in keys:
            video = self._videos[key]
            states[video.path] = FileState(
                video.size,
                video.mtime_ns,
                video.ctime_ns,
                video.inode,
                video.device,
                video.complete,
                video.error_kind,
                self._fingerprints.get(video.id),
            )
        return states

    async def upsert_videos(
        self,
        videos: Sequence[Video],
        *,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._check_open()
        for video in sorted(videos, key=lambda video: _encode_path(video.path)):
            key = _encode_path(video.path)
            existing = self._videos.get(key)
            if existing is None:
                video_id = self._next_video_id
                self._next_video_id += 1
            else:
                video_id = existing.id
            self._fingerprints.pop(video_id, None)
            self._videos[key] = msgspec.structs.replace(video, id=video_id)
        await self.set_fingerprints(fingerprints)

    async def delete_videos(self, paths: Sequence[str]) -> int:
        self._check_open()
        removed = [self._videos.pop(_encode_path(path), None) for path in paths]
        return sum(video is not None for video in removed)

    async def delete_videos_under(self, under: str) -> int:
        self._check_open()
        keys = self._under(under)
        for key in keys:
            del self._videos[key]
        return len(keys)

    async def set_offline(self, under: str, offline: bool) -> int:
        self._check_open()
        changed = 0
        for key in self._under(under):
            video = self._videos[key]
            if video.offline != offline:
                self._videos[key] = msgspec.structs.replace(video, offline=offline)
                changed += 1
        return changed

    async def get_video(self, path: str) -> Video | None:
        self._check_open()
        return self._videos.get(_encode_path(path))

    async def videos_under(self, under: str) -> list[Video]:
        self._check_open()
        return [self._videos[key] for key in self._under(under)]

    async def videos_with_inodes(self, keys: Sequence[tuple[int, int]]) -> list[Video]:
        self._check_open()
        wanted = set(keys)
        return [
            video
            for _, video in sorted(self._videos.items())
            if (video.device, video.inode) in wanted
        ]

    async def move_video(self, old_path: str, video: Video) -> bool:
        self._check_open()
        existing = self._videos.pop(_encode_path(old_path), None)
        if existing is None:
            return False
        moved = msgspec.structs.replace(video, id=existing.id)
        self._videos[_encode_path(video.path)] = moved
        return True

    async def move_tree(self, old: str, new: str, root: str) -> int:
        self._check_open()
        old_bytes = _directory_prefix(old)
        new_bytes = _directory_prefix(new)
        if old_bytes == new_bytes:
            return 0
        moving = {key: self._videos.pop(key) for key in self._under(old)}
        for key in self._under(new):
            del self._videos[key]
        for key, video in moving.items():
            new_key = new_bytes + key[len(old_bytes) :]
            self._videos[new_key] = msgspec.structs.replace(
                video, path=os.fsdecode(new_key), root=root
            )
        return len(moving)

    async def set_fingerprints(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        self._check_open()
        for path, fingerprint in fingerprints:
            video = self._videos.get(_encode_path(path))
            if video is not None:
                self._fingerprints[video.id] = fingerprint

    async def videos_with_fingerprint(
        self, size: int, fingerprint: str, *, not_on_device: int | None = None
    ) -> list[Video]:
        self._check_open()
        return [
            video
            for _, video in sorted(self._videos.items())
            if video.size == size
            and self._fingerprints.get(video.id) == fingerprint
            and (not_on_device is None or video.device != not_on_device)
        ]

    async def fingerprinted_sizes(
        self, sizes: Sequence[int], *, not_on_device: int
    ) -> set[int]:
        self._check_open()
        wanted = set(sizes)
        return {
            video.size
            for video in self._videos.values()
            if video.size in wanted
            and video.device != not_on_device
            and video.id in self._fingerprints
        }

    async def restore_videos(self, videos: Sequence[Video]) -> None:
        self._check_open()
        for video in videos:
            self._fingerprints.pop(video.id, None)
            self._videos[_encode_path(video.path)] = video
            self._next_video_id = max(self._next_video_id, video.id + 1)

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        self._check_open()
        keys = sorted(self._videos) if under is None else self._under(under)
        if cursor is not None:
            after = decode_cursor(cursor)
            keys = [key for key in keys if key > after]
        videos = [self._videos[key] for key in keys[:limit]]
        return _page(videos, has_more=len(keys) > limit)

    async def count_videos(self) -> int:
        self._check_open()
        return len(self._videos)

    async def insert_job(self, job: Job) -> Job:
        self._check_open()
        stored = msgspec.structs.replace(_copy_job(job), id=self._next_job_id)
        self._next_job_id += 1
        self._jobs[stored.id] = stored
        return _copy_job(stored)

    async def update_job(self, job: Job) -> None:
        self._check_open()
        if job.id in self._jobs:
            self._jobs[job.id] = _copy_job(job)

    async def get_job(self, job_id: int) -> Job | None:
        self._check_open()
        job = self._jobs.get(job_id)
        return None if job is None else _copy_job(job)

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        self._check_open()
        jobs = sorted(self._jobs.values(), key=lambda job: job.id, reverse=True)
        if status is not None:
            jobs = [job for job in jobs if job.status == status]
        return [_copy_job(job) for job in jobs[:limit]]

    async def unfinished_jobs(self) -> list[Job]:
        self._check_open()
        return [
            _copy_job(job)
            for job in sorted(self._jobs.values(), key=lambda job: job.id)
            if not job.status.is_finished
        ]

    async def count_jobs(self) -> dict[str, int]:
        self._check_open()
        counts = {state.value: 0 for state in JobState}
        for job in self._jobs.values():
            counts[job.status.value] += 1
        return counts

    async def requeue_interrupted_jobs(self) -> int:
        self._check_open()
        count = 0
        for job_id, job in self._jobs.items():
            if job.status == JobState.RUNNING:
                self._jobs[job_id] = msgspec.structs.replace(
                    job, status=JobState.PENDING, started_at=None, progress=None
                )
                count += 1
        return count

    async def prune_jobs(self, *, finished_before: float, keep: int) -> int:
        self._check_open()
        finished = sorted(
            (job for job in self._jobs.values() if job.status.is_finished),
            key=lambda job: job.id,
            reverse=True,
        )
        doomed = [
            job.id
            for index, job in enumerate(finished)
            if index >= keep
            or (job.finished_at is not None and job.finished_at < finished_before)
        ]
        for job_id in doomed:
            del self._jobs[job_id]
        return len(doomed)
