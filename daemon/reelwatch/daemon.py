"""The composition root: builds the daemon's parts and runs them together.

:class:`Daemon` takes every collaborator as an optional argument, with the
production implementation as the default, so tests can pass in-memory
doubles. It implements :class:`reelwatch.service.Service` for the control
server.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable

import anyio
import anyio.abc
import structlog

from . import __version__
from .config import Config
from .core import Core, load_core
from .errors import InvalidParamsError, PathNotAllowedError
from .jobs import AnyioJobQueue, JobQueue, Priority
from .models import Job, JobKind, JobState, RootState, RootStatus, Status, VideoPage
from .repository import Repository, SQLiteRepository
from .scanner import Scanner, SettleTracker, normalize_path, root_for
from .server import ControlServer
from .watcher import EventSource, Watcher, WatchfilesSource

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]


class Daemon:
    """The reelwatch daemon: catalog, job queue, scanner, watcher and control socket.

    Args:
        config: the loaded configuration.
        repository: the catalog; defaults to SQLite in ``config.state_dir``.
        queue: the job queue; defaults to :class:`AnyioJobQueue` on the
            repository.
        core: probing and walking; defaults to the compiled Rust core.
        clock: the wall clock in Unix seconds; defaults to :func:`time.time`.
        event_source: filesystem events; defaults to watchfiles.
        listen_socket: a listening socket handed over by systemd socket
            activation; without it the daemon binds ``config.socket_path``.
        serve_control_socket: False runs without a control socket, for tests
            that call the :class:`Service` methods directly.

    Raises:
        CoreUnavailableError: no ``core`` was given and the compiled one
            cannot be imported.
    """

    def __init__(
        self,
        config: Config,
        *,
        repository: Repository | None = None,
        queue: JobQueue | None = None,
        core: Core | None = None,
        clock: Clock | None = None,
        event_source: EventSource | None = None,
        listen_socket: socket.socket | None = None,
        serve_control_socket: bool = True,
    ) -> None:
        self.config = config
        self._clock = clock or time.time

        self._repository = repository or SQLiteRepository(config.database_path)
        self._queue = queue or AnyioJobQueue(
            self._repository,
            workers=config.scan.workers,
            job_timeout_s=config.scan.job_timeout_s,
            finished_jobs_keep=config.scan.finished_jobs_keep,
            finished_jobs_max_age_s=config.scan.finished_jobs_max_age_s,
            clock=self._clock,
        )
        self._core = core or load_core()

        self._event_source = event_source or WatchfilesSource(
            ignore_globs=config.scan.ignore_globs,
            force_polling=config.scan.force_polling,
        )
        self._listen_socket = listen_socket
        self._serve_control_socket = serve_control_socket

        self._settle = SettleTracker(self._submit_settled)
        self._scanner = Scanner(
            repository=self._repository,
            core=self._core,
            config=config,
            settle=self._settle,
            clock=self._clock,
        )
        self._queue.register(JobKind.SCAN, self._scanner)

        self._roots = {
            root: RootStatus(path=root, state=RootState.MISSING)
            for root in config.allowed_scan_roots
        }
        self._started = False

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled, then stop cleanly.

        Opens the catalog, re-queues jobs interrupted by a crash, queues a full
        scan of every root, starts the watcher and the control socket, then
        calls ``task_status.started()``. Cancelling the task stops the
        workers (a job interrupted this way runs again on the next start),
        closes the socket and closes the catalog.

        Raises:
            StorageError: the catalog cannot be opened.
            ControlSocketError: the control socket cannot be created.
        """
        await self._repository.open()
        stop_watching = anyio.Event()
        try:
            async with anyio.create_task_group() as task_group:
                await task_group.start(self._queue.run)
                self._set_initial_root_states()
                for root in self.config.allowed_scan_roots:
                    # A missing root is scanned too: that marks its entries offline.
                    await self._queue.submit(JobKind.SCAN, root)
                task_group.start_soon(self._settle.run)
                task_group.start_soon(self._watch, stop_watching)
                task_group.start_soon(self._reconcile_periodically)
                if self._serve_control_socket:
                    await task_group.start(self._control_server().serve)
                self._started = True
                log.info(
                    "daemon_started",
                    roots=list(self.config.allowed_scan_roots),
                    socket=self.config.socket_path,
                    version=__version__,
                )
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    # The watch thread checks this event every few
                    # milliseconds; cancellation alone reaches it only when
                    # its current wait times out.
                    stop_watching.set()
        finally:
            self._started = False
            stop_watching.set()
            with anyio.CancelScope(shield=True):
                await self._repository.close()
            log.info("daemon_stopped")

    def _control_server(self) -> ControlServer:
        return ControlServer(
            self,
            self.config.socket,
            None if self._listen_socket else self.config.socket_path,
            listen_socket=self._listen_socket,
        )

    def _set_initial_root_states(self) -> None:
        # The watcher reports the states it finds once it starts.
        watched = (
            RootState.POLLING if self.config.scan.force_polling else RootState.WATCHING
        )
        for root in self.config.allowed_scan_roots:
            if os.path.isdir(root):
                self._roots[root] = RootStatus(path=root, state=watched)
            else:
                self._roots[root] = RootStatus(
                    path=root,
                    state=RootState.MISSING,
                    error="the folder does not exist or is not a directory",
                )
                log.warning("root_missing", root=root)

    async def _watch(self, stop_event: anyio.Event) -> None:
        watcher = Watcher(
            source=self._event_source,
            queue=self._queue,
            core=self._core,
            config=self.config,
            on_root_status=self._set_root_status,
        )
        await watcher.run(stop_event)

    def _set_root_status(self, status: RootStatus) -> None:
        if status.path in self._roots:
            self._roots[status.path] = status

    async def _submit_settled(self, path: str) -> None:
        await self._queue.submit(JobKind.SCAN, path, recursive=False)

    async def _reconcile_periodically(self) -> None:
        interval_s = self.config.scan.reconcile_interval_s
        if interval_s <= 0:
            return
        while True:
            # Jitter of 3/4 to 5/4 keeps several daemons from scanning at once.
            await anyio.sleep(interval_s * random.uniform(0.75, 1.25))
            log.info("reconcile_started", roots=list(self.config.allowed_scan_roots))
            for root in self.config.allowed_scan_roots:
                await self._queue.submit(JobKind.SCAN, root)

    async def status(self) -> Status:
        counts = await self._queue.counts()
        settling = len(self._settle)
        return Status(
            version=__version__,
            idle=self._started and self._queue.is_idle() and settling == 0,
            roots=[self._roots[root] for root in self.config.allowed_scan_roots],
            jobs=counts,
            videos=await self._repository.count_videos(),
            settling=settling,
        )

    async def scan(self, path: str, *, recursive: bool = True) -> Job:
        target = await self._resolve_request_path(path, "path")
        return await self._queue.submit(
            JobKind.SCAN, target, recursive=recursive, priority=Priority.USER
        )

    async def get_job(self, job_id: int) -> Job:
        return await self._queue.get(job_id)

    async def list_jobs(self, *, status: JobState | None, limit: int) -> list[Job]:
        _check_limit(limit)
        return await self._queue.list(status=status, limit=limit)

    async def cancel_job(self, job_id: int) -> Job:
        """Cancel a pending job, or ask a running one to stop at its next batch.

        Raises:
            NotFoundError: no job has that id.
        """
        return await self._queue.cancel(job_id)

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage:
        _check_limit(limit)
        resolved = (
            None if under is None else await self._resolve_request_path(under, "under")
        )
        return await self._repository.list_videos(
            under=resolved, limit=limit, cursor=cursor
        )

    async def _resolve_request_path(self, path: str, param: str) -> str:
        """Return the real path a request names, checked against the roots.

        Raises:
            InvalidParamsError: the path is relative or malformed.
            PathNotAllowedError: the path is outside every allowed root.
        """
        roots = self.config.allowed_scan_roots
        if not path or not os.path.isabs(path):
            raise InvalidParamsError(
                f"{param} {path!r} is not an absolute path; pass the full path"
            )
        normalized = normalize_path(path)
        [check] = await self._core.check_paths([normalized], roots)
        if check.error_kind is None and check.resolved is not None:
            return check.resolved
        if check.error_kind == "invalid_path":
            raise InvalidParamsError(f"{param} {path!r} is invalid: {check.message}")
        if check.error_kind != "outside_roots" and root_for(normalized, roots):
            # It does not exist (any more) or cannot be resolved: a scan of it
            # removes its entries, so a path inside a root is still accepted.
            return normalized
        raise PathNotAllowedError(
            f"{param} {path!r} is not inside an allowed scan root "
            f"({', '.join(roots)}); add its folder to allowed_scan_roots or "
            "pick a path inside one"
        )


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidParamsError(f"limit must be at least 1, got {limit}")
