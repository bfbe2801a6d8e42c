"""The composition root: builds the daemon's parts and runs them together.

:class:`Daemon` takes every collaborator as an optional argument, with the
production implementation as the default, so tests can pass in-memory
doubles. It implements :class:`reelwatch.service.Service` for the control
server.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.abc
import msgspec
import structlog

from . import __version__
from .config import Config
from .core import Core, load_core
from .errors import ConfigError, InvalidParamsError, PathNotAllowedError
from .events import (
    ChangeJournal,
    EventBus,
    ObservedEventSource,
    PublishingRepository,
    Subscription,
    Synchronizer,
    find_video,
    list_changes,
)
from .jobs import AnyioJobQueue, JobQueue, Priority
from .metrics import ChangeTimer, DaemonMetrics, MeteredCore, compute_stats
from .models import (
    Job,
    JobKind,
    JobState,
    RootState,
    RootStatus,
    Status,
    Video,
    VideoPage,
)
from .notify_source import CoreEventSource, core_watcher_available
from .protocol import CatalogStats, VideosListResult
from .repository import Repository, SQLiteRepository
from .scanner import RemovedEntries, Scanner, SettleTracker, normalize_path, root_for
from .server import ControlServer, describe_config
from .watcher import EventSource, Watcher, WatchfilesSource

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
ConfigLoader = Callable[[], Config]

# Settings a reload cannot change in a running daemon; a new value is logged
# and takes effect on the next start.
_RESTART_ONLY_SETTINGS = (
    "state_dir",
    "socket_path",
    "socket",
    "log_level",
    "log_format",
)
_RESTART_ONLY_SCAN_SETTINGS = ("workers", "job_timeout_s", "watcher")

# The longest wait for the watcher to set up its watches before the first
# scans are queued anyway. Setting up walks every root, which can take a while
# for a large library, and a stuck walk must not keep the scans from running.
_WATCH_START_TIMEOUT_S = 60.0

# The shortest time between two STATUS= messages to the service manager.
_STATUS_MIN_INTERVAL_S = 2.0


class Daemon:
    """The reelwatch daemon: catalog, job queue, scanner, watcher and control socket.

    Args:
        config: the loaded configuration.
        repository: the catalog; defaults to SQLite in ``config.state_dir``.
        queue: the job queue; defaults to :class:`AnyioJobQueue` on the
            repository.
        core: probing and walking; defaults to the compiled Rust core.
        clock: the wall clock in Unix seconds; defaults to :func:`time.time`.
        event_source: filesystem events; defaults to the one ``scan.watcher``
            names (the Rust core's watcher, or watchfiles).
        listen_socket: a listening socket handed over by systemd socket
            activation; without it the daemon binds ``config.socket_path``.
        serve_control_socket: False runs without a control socket, for tests
            that call the :class:`Service` methods directly.
        config_loader: reads the configuration again for :meth:`reload`;
            without it a reload keeps the running configuration.

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
        config_loader: ConfigLoader | None = None,
    ) -> None:
        self.config = config
        self._config_loader = config_loader
        self._config_error: str | None = None
        self._clock = clock or time.time

        # Every catalog and job write is journaled and published to
        # subscribers; probes and filesystem events are counted for metrics.
        self._metrics = DaemonMetrics()
        self._events = EventBus(self._metrics)
        self._journal = ChangeJournal()
        self._change_timer = ChangeTimer(self._metrics.event_to_catalog_seconds)
        self._server: ControlServer | None = None
        self._repository = PublishingRepository(
            repository or SQLiteRepository(config.database_path),
            bus=self._events,
            journal=self._journal,
            timer=self._change_timer,
        )
        self._queue = queue or AnyioJobQueue(
            self._repository,
            workers=config.scan.workers,
            job_timeout_s=config.scan.job_timeout_s,
            finished_jobs_keep=config.scan.finished_jobs_keep,
            finished_jobs_max_age_s=config.scan.finished_jobs_max_age_s,
            clock=self._clock,
        )
        self._core = MeteredCore(core or load_core(), self._metrics)

        self._fixed_event_source = event_source
        self._event_source = event_source or _default_event_source(config)
        self._listen_socket = listen_socket
        self._serve_control_socket = serve_control_socket

        self._settle = SettleTracker(self._submit_settled)
        self._synchronizer = Synchronizer(
            queue=self._queue, settling=lambda: self._settle.paths
        )
        self._removed = RemovedEntries()
        self._scanner = Scanner(
            repository=self._repository,
            core=self._core,
            config=config,
            settle=self._settle,
            clock=self._clock,
            removed=self._removed,
        )
        self._queue.register(JobKind.SCAN, self._scanner)

        self._roots = {
            root: RootStatus(path=root, state=RootState.MISSING)
            for root in config.allowed_scan_roots
        }
        self._started = False
        self._restart_watcher = anyio.Event()
        self._reload_lock = anyio.Lock()

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
        self._stop_watching = stop_watching = anyio.Event()
        try:
            async with anyio.create_task_group() as task_group:
                await task_group.start(self._queue.run)
                self._set_initial_root_states()
                task_group.start_soon(self._settle.run)
                # The first scans are queued once the roots are watched, so a
                # file created while the watches are set up is not missed.
                watching = anyio.Event()
                task_group.start_soon(self._watch, stop_watching, watching)
                with anyio.move_on_after(_WATCH_START_TIMEOUT_S) as waited:
                    await watching.wait()
                if waited.cancelled_caught:
                    log.warning("watch_start_slow", timeout_s=_WATCH_START_TIMEOUT_S)
                for root in self.config.allowed_scan_roots:
                    # A scan interrupted by the last stop already covers it.
                    if self._queue.has_unfinished(JobKind.SCAN, root):
                        continue
                    # A missing root is scanned too: that marks its entries offline.
                    await self._queue.submit(JobKind.SCAN, root)
                task_group.start_soon(self._reconcile_periodically)
                task_group.start_soon(_inject_watch_faults_on_signals)
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
        self._server = ControlServer(
            self,
            self.config.socket,
            None if self._listen_socket else self.config.socket_path,
            listen_socket=self._listen_socket,
        )
        return self._server

    def _set_initial_root_states(self) -> None:
        # The watcher reports the states it finds once it starts.
        for root in self.config.allowed_scan_roots:
            self._roots[root] = _initial_root_status(self.config, root)
            if self._roots[root].state == RootState.MISSING:
                log.warning("root_missing", root=root)

    async def _watch(self, stop_event: anyio.Event, watching: anyio.Event) -> None:
        """Run the watcher, and start it again on the new roots after a reload.

        ``watching`` is set once the first run has its watches in place. After
        a restart every root is scanned again, because changes made while the
        watcher was down sent no event.
        """
        on_ready: Callable[[], Awaitable[object]] = _set_event(watching)
        while not stop_event.is_set():
            # Each run has its own stop event, set by a reload (which ends
            # this run only) or by the daemon's stop_event (which ends all).
            restart = self._restart_watcher = anyio.Event()
            run_stop = anyio.Event()
            watcher = Watcher(
                source=ObservedEventSource(
                    self._event_source,
                    bus=self._events,
                    metrics=self._metrics,
                    timer=self._change_timer,
                ),
                queue=self._queue,
                core=self._core,
                config=self.config,
                on_root_status=self._set_root_status,
                on_move=self._move_entries,
            )
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_set_when_either, stop_event, restart, run_stop)
                await watcher.run(run_stop, on_ready=on_ready)
                task_group.cancel_scope.cancel()
            if not restart.is_set():
                return
            log.info("watcher_restarted", roots=list(self.config.allowed_scan_roots))
            on_ready = self._scan_every_root

    async def _scan_every_root(self) -> None:
        for root in self.config.allowed_scan_roots:
            await self._queue.submit(JobKind.SCAN, root)

    def _set_root_status(self, status: RootStatus) -> None:
        if status.path in self._roots:
            self._roots[status.path] = status

    async def _move_entries(self, old: str, new: str, root: str) -> None:
        moved = await self._repository.move_tree(old, new, root)
        if moved:
            log.info("entries_moved", old_path=old, path=new, count=moved)

    async def _submit_settled(self, path: str) -> None:
        # ``path`` is one settled file, or a folder without subfolders whose
        # files settled together (see SettleTracker).
        # NOTE: files settling together in a folder that has subfolders still
        # get one job each.
        if root_for(path, self.config.allowed_scan_roots) is None:
            return  # its root was removed by a reload while the file settled
        await self._queue.submit(JobKind.SCAN, path, recursive=False)

    async def _reconcile_periodically(self) -> None:
        while True:
            # Read on every round, so a reload changes the interval.
            interval_s = self.config.scan.reconcile_interval_s
            if interval_s <= 0:
                # Turned off: check again later, in case a reload turns it on.
                await anyio.sleep(60)
                continue
            # Jitter of 3/4 to 5/4 keeps several daemons from scanning at once.
            await anyio.sleep(interval_s * random.uniform(0.75, 1.25))
            log.info("reconcile_started", roots=list(self.config.allowed_scan_roots))
            for root in self.config.allowed_scan_roots:
                await self._queue.submit(JobKind.SCAN, root)

    async def status(
        self, *, sync: bool = False, sync_timeout_s: float = 60.0
    ) -> Status:
        if sync:
            await self._sync(None, sync_timeout_s)
        counts = await self._queue.counts()
        settling = len(self._settle)
        return Status(
            version=__version__,
            idle=self._started and self._queue.is_idle() and settling == 0,
            roots=[self._roots[root] for root in self.config.allowed_scan_roots],
            jobs=counts,
            videos=await self._repository.count_videos(),
            settling=settling,
            probes=self._scanner.probes_total,
            config_error=self._config_error,
            storage_error=self._repository.storage_error,
        )

    async def status_summary(self) -> str:
        """Return the one-line summary for ``systemctl status``."""
        status = await self.status()
        watched = sum(
            root.state in (RootState.WATCHING, RootState.POLLING)
            for root in status.roots
        )
        pending = status.jobs.get(JobState.PENDING.value, 0)
        running = status.jobs.get(JobState.RUNNING.value, 0)
        text = (
            f"{status.videos} videos, {pending + running} jobs pending, "
            f"{watched} of {len(status.roots)} roots watched"
        )
        if status.config_error:
            text += "; configuration reload failed"
        return text

    async def report_status(
        self,
        send: Callable[[str], object],
        *,
        min_interval_s: float = _STATUS_MIN_INTERVAL_S,
    ) -> None:
        """Send :meth:`status_summary` each time it changes, until cancelled.

        Messages are at least ``min_interval_s`` apart; ``send`` is meant to
        be ``Notifier.status``.
        """
        last = ""
        last_state: tuple[object, ...] = ()
        while True:
            # The summary counts catalog rows and jobs in SQL, which costs
            # milliseconds on a large catalog; an idle daemon whose catalog,
            # queue and roots did not change skips it.
            state = (
                self._journal.cursor,
                self._queue.is_idle(),
                len(self._settle),
                tuple(self._roots.values()),
            )
            if self._started and (state != last_state or not state[1]):
                text = await self.status_summary()
                last_state = state
                if text != last:
                    send(text)
                    last = text
            await anyio.sleep(min_interval_s)

    async def reload(self) -> bool:
        """Read the configuration again and apply it to the running daemon.

        Roots added are watched and scanned. Roots removed stop being watched,
        their jobs are cancelled and their entries leave the catalog, because
        the catalog lists only files under allowed roots. Scan settings apply
        to the scans that start next. The settings in
        ``_RESTART_ONLY_SETTINGS`` keep their running value until a restart.

        An invalid file leaves the running configuration in place; the reason
        is logged and shown in ``status`` as ``config_error`` until a reload
        succeeds.

        Returns:
            Whether the new configuration was applied.
        """
        if self._config_loader is None:
            log.warning("config_reload_unavailable", reason="no configuration file")
            return False
        async with self._reload_lock:
            try:
                loaded = await anyio.to_thread.run_sync(self._config_loader)
            except ConfigError as exc:
                self._config_error = str(exc)
                log.error("config_reload_failed", error=str(exc))
                return False
            await self._apply_config(loaded)
            self._config_error = None
            return True

    async def _apply_config(self, loaded: Config) -> None:
        old = self.config
        new = _keep_restart_only_settings(old, loaded)
        added = [root for root in new.allowed_scan_roots if root not in self._roots]
        removed = [
            root
            for root in old.allowed_scan_roots
            if root not in new.allowed_scan_roots
        ]

        self.config = new
        self._scanner.configure(new)
        if self._fixed_event_source is None:
            self._event_source = _default_event_source(new)
        for root in removed:
            del self._roots[root]
            cancelled = await self._queue.cancel_under(root)
            deleted = await self._repository.delete_videos_under(root)
            log.info("root_removed", root=root, entries_deleted=deleted, jobs=cancelled)
        for root in added:
            self._roots[root] = _initial_root_status(new, root)
        self._restart_watcher.set()
        for root in added:
            await self._queue.submit(JobKind.SCAN, root)
            log.info("root_added", root=root)
        log.info(
            "config_reloaded",
            roots=list(new.allowed_scan_roots),
            added=added,
            removed=removed,
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
        self,
        *,
        under: str | None,
        limit: int,
        cursor: str | None,
        sync: bool = False,
        sync_timeout_s: float = 60.0,
    ) -> VideoPage:
        _check_limit(limit)
        resolved = (
            None if under is None else await self._resolve_request_path(under, "under")
        )
        if sync:
            await self._sync(resolved, sync_timeout_s)
        return await self._repository.list_videos(
            under=resolved, limit=limit, cursor=cursor
        )

    def change_cursor(self) -> str:
        return self._journal.cursor

    async def list_changes(
        self,
        *,
        since: str,
        under: str | None,
        limit: int,
        sync: bool = False,
        sync_timeout_s: float = 60.0,
    ) -> VideosListResult:
        _check_limit(limit)
        resolved = (
            None if under is None else await self._resolve_request_path(under, "under")
        )
        if sync:
            await self._sync(resolved, sync_timeout_s)
        return await list_changes(
            self._journal, self._repository, since=since, under=resolved, limit=limit
        )

    async def get_video(
        self, path: str, *, sync: bool = False, sync_timeout_s: float = 60.0
    ) -> Video:
        target = await self._resolve_request_path(path, "path")
        if sync:
            await self._synchronizer.sync(
                [target], recursive=False, timeout_s=sync_timeout_s
            )
        # The catalog keeps the path the walk found, which is not resolved
        # when the file is reached through a symlinked folder.
        return await find_video(self._repository, [target, normalize_path(path)])

    async def rescan(self, root: str | None) -> list[Job]:
        roots = self.config.allowed_scan_roots
        targets = list(roots)
        if root is not None:
            target = await self._resolve_request_path(root, "root")
            if target not in roots:
                raise InvalidParamsError(
                    f"root {root!r} is inside an allowed scan root but is not one "
                    f"itself; pass one of {', '.join(roots)}, or use scan for a "
                    "folder inside a root"
                )
            targets = [target]
        return [
            await self._queue.submit(
                JobKind.SCAN, target, recursive=True, priority=Priority.USER
            )
            for target in targets
        ]

    async def stats(self, *, under: str | None) -> CatalogStats:
        resolved = (
            None if under is None else await self._resolve_request_path(under, "under")
        )
        return await compute_stats(self._repository, under=resolved)

    async def effective_config(self) -> dict[str, Any]:
        return describe_config(self.config)

    async def metrics(self) -> str:
        server = self._server
        return self._metrics.render(
            jobs_by_state=await self._queue.counts(),
            catalog_videos=await self._repository.count_videos(),
            connections=0 if server is None else server.active_connections,
            connections_accepted=0 if server is None else server.accepted_connections,
            connections_rejected=0 if server is None else server.rejected_connections,
            subscribers=self._events.subscriber_count,
        )

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        max_backlog: int,
        on_drop: Callable[[], None] | None = None,
    ) -> Subscription:
        return self._events.subscribe(topics, max_backlog=max_backlog, on_drop=on_drop)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._events.unsubscribe(subscription)

    async def _sync(self, under: str | None, timeout_s: float) -> None:
        scopes = list(self.config.allowed_scan_roots) if under is None else [under]
        await self._synchronizer.sync(scopes, recursive=True, timeout_s=timeout_s)

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


def _initial_root_status(config: Config, root: str) -> RootStatus:
    if not os.path.isdir(root):
        return RootStatus(
            path=root,
            state=RootState.MISSING,
            error="the folder does not exist or is not a directory",
        )
    state = RootState.POLLING if config.scan.force_polling else RootState.WATCHING
    return RootStatus(path=root, state=state)


def _default_event_source(config: Config) -> EventSource:
    """Build the event source ``scan.watcher`` names.

    The core's watcher reports lost events, the watch limit and unmounted
    roots. watchfiles reports none of them, so it is only the fallback for a
    core built without the watcher.
    """
    if config.scan.watcher == "core":
        if core_watcher_available():
            return CoreEventSource(
                ignore_globs=config.scan.ignore_globs,
                force_polling=config.scan.force_polling,
                poll_interval_ms=round(config.scan.poll_interval_s * 1000),
                watcher_factory=_fault_injection_factory(),
            )
        log.warning(
            "core_watcher_unavailable",
            fallback="watchfiles",
            hint='rebuild the core, or set scan.watcher = "watchfiles"',
        )
    return WatchfilesSource(
        ignore_globs=config.scan.ignore_globs,
        force_polling=config.scan.force_polling,
        poll_delay_ms=round(config.scan.poll_interval_s * 1000),
    )


# For end-to-end tests only: names a file that contains a fault name
# ("pause", "resume", "overflow" or "watch_limit"). On SIGUSR1 the daemon
# reads it and injects that fault into every core watcher; "pause" stops
# taking events from inotify, so the kernel queue can overflow for real.
ENV_DEBUG_WATCH_FAULTS = "REELWATCH_DEBUG_WATCH_FAULTS"
_live_core_watchers: list[Any] = []


def _fault_injection_factory() -> Callable[..., Any] | None:
    if not os.environ.get(ENV_DEBUG_WATCH_FAULTS):
        return None
    from . import _core

    def build(*args: Any, **kwargs: Any) -> Any:
        watcher = _core.Watcher(*args, **kwargs)
        _live_core_watchers.append(watcher)
        return watcher

    return build


async def _inject_watch_faults_on_signals() -> None:
    fault_file = os.environ.get(ENV_DEBUG_WATCH_FAULTS)
    if not fault_file:
        return
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            fault = (await anyio.Path(fault_file).read_text()).strip()
            for watcher in _live_core_watchers:
                try:
                    watcher._debug_inject(fault)
                except (RuntimeError, ValueError) as exc:
                    # A watcher closed by a restart, or an unknown fault name.
                    log.warning("watch_fault_failed", fault=fault, error=str(exc))
            log.warning("watch_fault_injected", fault=fault)


def _keep_restart_only_settings(old: Config, new: Config) -> Config:
    """Return ``new`` with the running values of the settings a reload cannot change."""
    kept_scan = {name: getattr(old.scan, name) for name in _RESTART_ONLY_SCAN_SETTINGS}
    changed = [
        name
        for name in _RESTART_ONLY_SETTINGS
        if getattr(old, name) != getattr(new, name)
    ] + [
        f"scan.{name}"
        for name, value in kept_scan.items()
        if getattr(new.scan, name) != value
    ]
    if changed:
        log.warning("config_restart_required", settings=changed)
    kept = {name: getattr(old, name) for name in _RESTART_ONLY_SETTINGS}
    scan = msgspec.structs.replace(new.scan, **kept_scan)
    return msgspec.structs.replace(new, scan=scan, **kept)


def _set_event(event: anyio.Event) -> Callable[[], Awaitable[None]]:
    async def set_event() -> None:
        event.set()

    return set_event


async def _set_when_either(
    first: anyio.Event, second: anyio.Event, target: anyio.Event
) -> None:
    async with anyio.create_task_group() as task_group:

        async def wait_for(event: anyio.Event) -> None:
            await event.wait()
            task_group.cancel_scope.cancel()

        task_group.start_soon(wait_for, first)
        task_group.start_soon(wait_for, second)
    target.set()


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidParamsError(f"limit must be at least 1, got {limit}")
