"""The operations the control socket exposes, as a Protocol the daemon implements.

The protocol server depends only on this interface, so it can be tested against
an in-memory double and the daemon can be tested without a socket.
"""

from __future__ import annotations

from typing import Protocol

from .models import Job, JobState, Status, VideoPage

__all__ = ["Service"]


class Service(Protocol):
    """What a client can ask of the daemon.

    Every method raises a :class:`reelwatch.errors.DaemonError` subclass for a
    request it cannot serve; the server turns it into a JSON-RPC error.
    """

    async def status(self) -> Status:
        """Return the daemon's current status."""
        ...

    async def scan(self, path: str, *, recursive: bool = True) -> Job:
        """Queue a scan of ``path`` and return the job.

        Raises:
            PathNotAllowedError: ``path`` is not inside an allowed scan root.
        """
        ...

    async def get_job(self, job_id: int) -> Job:
        """Return one job.

        Raises:
            NotFoundError: no job has that id.
        """
        ...

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        """Return the newest jobs first, optionally only those in ``status``."""
        ...

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        """Return catalog entries in path order, ``limit`` at a time.

        Raises:
            PathNotAllowedError: ``under`` is not inside an allowed scan root.
            InvalidParamsError: ``cursor`` is not one this daemon issued.
        """
        ...
