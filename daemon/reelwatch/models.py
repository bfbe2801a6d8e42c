"""Records that the daemon stores and sends to clients: videos, jobs, roots, status."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "Job",
    "JobKind",
    "JobState",
    "Progress",
    "RootState",
    "RootStatus",
    "Status",
    "Video",
    "VideoPage",
]


class JobState(enum.StrEnum):
    """Life cycle of a job. ``pending`` and ``running`` are the unfinished states."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


class JobKind(enum.StrEnum):
    """What a job does; the queue dispatches on it to a registered handler."""

    SCAN = "scan"


class RootState(enum.StrEnum):
    """How a scan root is being observed."""

    WATCHING = "watching"
    POLLING = "polling"
    MISSING = "missing"
    ERROR = "error"


class Video(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One catalog entry: a file with a video extension under a scan root.

    ``id`` stays the same for the life of the entry. When the file could not be
    probed, ``error`` says why and the media fields are null.
    """

    id: int
    path: str
    size: int
    mtime_ns: int
    container: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    error: str | None = None
    error_kind: str | None = None
    rotation: int | None = None
    video_profile: str | None = None
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    bit_rate: int | None = None
    complete: bool | None = None
    ctime_ns: int = 0
    inode: int = 0
    device: int = 0
    root: str = ""
    offline: bool = False
    probed_at: float | None = None


class VideoPage(msgspec.Struct, kw_only=True):
    """A page of ``videos.list``; ``next_cursor`` is null on the last page."""

    videos: list[Video]
    next_cursor: str | None = None


class Progress(msgspec.Struct, kw_only=True):
    """How far a running job has got: ``done`` of ``total`` items."""

    done: int
    total: int


class Job(msgspec.Struct, kw_only=True):
    """A unit of queued work, stored as a row so that it survives restarts.

    Times are Unix timestamps in seconds. ``result`` is the handler's summary,
    for a scan: counts of scanned, new, updated, removed and skipped files, and
    a list of per-file errors. ``progress`` is set while the job runs.
    """

    id: int
    kind: str
    path: str
    status: JobState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: int = 0
    progress: Progress | None = None


class RootStatus(msgspec.Struct, kw_only=True):
    """One allowed scan root and how it is observed.

    ``error`` says why when the root is not watched normally.
    """

    path: str
    state: RootState
    error: str | None = None


class Status(msgspec.Struct, kw_only=True):
    """The answer to ``status``: version, idleness, roots, job counts, catalog size.

    ``settling`` counts files that wait for their writes to stop before a probe.
    ``probes`` counts the files probed since the daemon started.
    ``config_error`` says why the last configuration reload was rejected; it
    is null when the running configuration is the file's current content.
    ``storage_error`` is the error of the last failed catalog write (full or
    read-only disk); it is null again once a write succeeds.
    """

    version: str
    idle: bool
    roots: list[RootStatus]
    jobs: dict[str, int]
    videos: int
    settling: int = 0
    probes: int = 0
    config_error: str | None = None
    storage_error: str | None = None
