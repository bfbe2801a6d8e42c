"""The operations the control socket exposes, as a Protocol the daemon implements.

The protocol server depends only on this interface, so it can be tested against
an in-memory double and the daemon can be tested without a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .events import Subscription
from .models import Job, JobState, Status, Video, VideoPage
from .protocol import CatalogStats, VideosListResult

__all__ = ["Service"]


class Service(Protocol):
    """What a client can ask of the daemon.

    Every method raises a :class:`reelwatch.errors.DaemonError` subclass for a
    request it cannot serve; the server turns it into a JSON-RPC error.
    Methods that take ``sync`` first wait until every filesystem change made
    before the call is in the catalog, and raise
    :class:`reelwatch.events.SyncTimeoutError` when ``sync_timeout_s`` passes
    first.
    """

    async def status(
        self, *, sync: bool = False, sync_timeout_s: float = 60.0
    ) -> Status:
        """Return the daemon's current status."""
        ...

    async def scan(self, path: str, *, recursive: bool = True) -> Job:
        """Queue a scan of ``path`` and return the job.

        Raises:
            PathNotAllowedError: ``path`` is not inside an allowed scan root.
        """
        ...

    async def rescan(self, root: str | None) -> list[Job]:
        """Queue a full incremental scan of one root, or of every root.

        Raises:
            PathNotAllowedError: ``root`` is outside every allowed root.
            InvalidParamsError: ``root`` is inside a root but not one itself.
        """
        ...

    async def get_job(self, job_id: int) -> Job:
        """Return one job.

        Raises:
            NotFoundError: no job has that id.
        """
        ...

    async def cancel_job(self, job_id: int) -> Job:
        """Cancel a pending job, or ask a running one to stop; return it.

        Raises:
            NotFoundError: no job has that id.
        """
        ...

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        """Return the newest jobs first, optionally only those in ``status``."""
        ...

    async def list_videos(
        self,
        *,
        under: str | None,
        limit: int,
        cursor: str | None,
        sync: bool = False,
        sync_timeout_s: float = 60.0,
    ) -> VideoPage:
        """Return catalog entries in path order, ``limit`` at a time.

        Raises:
            PathNotAllowedError: ``under`` is not inside an allowed scan root.
            InvalidParamsError: ``cursor`` is not one this daemon issued.
        """
        ...

    def change_cursor(self) -> str:
        """Return the change-journal position of "now", for ``since``."""
        ...

    async def list_changes(
        self,
        *,
        since: str,
        under: str | None,
        limit: int,
        sync: bool = False,
        sync_timeout_s: float = 60.0,
    ) -> VideosListResult:
        """Return what changed after the change cursor ``since``.

        Raises:
            PathNotAllowedError: ``under`` is not inside an allowed scan root.
            InvalidParamsError: ``since`` is not a change cursor.
        """
        ...

    async def get_video(
        self, path: str, *, sync: bool = False, sync_timeout_s: float = 60.0
    ) -> Video:
        """Return the catalog entry of one file.

        Raises:
            PathNotAllowedError: ``path`` is outside every allowed root.
            NotFoundError: the catalog has no entry for ``path``.
        """
        ...

    async def stats(self, *, under: str | None) -> CatalogStats:
        """Return catalog totals, for everything or below ``under``."""
        ...

    async def effective_config(self) -> dict[str, Any]:
        """Return the configuration in effect, with absolute paths."""
        ...

    async def metrics(self) -> str:
        """Return the daemon's metrics in the Prometheus text format."""
        ...

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        max_backlog: int,
        on_drop: Callable[[], None] | None = None,
    ) -> Subscription:
        """Open a notification subscription; see :class:`reelwatch.events.EventBus`."""
        ...

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a subscription opened by :meth:`subscribe`."""
        ...
