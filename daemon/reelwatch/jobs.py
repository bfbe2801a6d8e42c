"""The job queue: persistent jobs, coalesced by path, run by a pool of anyio workers.

Every job is a row in the repository; the queue also keeps the unfinished
ones in memory to pick the next job and to coalesce new submissions:

* one pending job per (kind, path): submitting the same path again returns it;
* a pending recursive job covers every path below it, so a submission under
  it returns that job instead of queueing another;
* a user request outranks background work, and raises the priority of a
  pending job it coalesces into.

A job still ``running`` when the process dies stays ``running`` in the
database, and :meth:`AnyioJobQueue.run` puts it back to ``pending`` on the next
start.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import anyio.abc
import msgspec
import structlog

from .errors import DaemonError, NotFoundError, StorageError
from .models import Job, JobKind, JobState, Progress
from .repository import MemoryRepository, Repository, is_same_or_under

__all__ = [
    "AnyioJobQueue",
    "Handler",
    "JobCancelledError",
    "JobContext",
    "JobQueue",
    "MemoryJobQueue",
    "Priority",
]

log = structlog.get_logger(__name__)

_PRUNE_INTERVAL_S = 60.0
# A job that could not write to the catalog runs again after 1, 2, 4, ...
# seconds, at most this long apart, until storage works again.
_STORAGE_RETRY_MAX_S = 30.0


class Priority(enum.IntEnum):
    """Order in which pending jobs run: higher first, then oldest first."""

    BACKGROUND = 0
    USER = 10


class JobCancelledError(DaemonError):
    """Raised inside a handler by :meth:`JobContext.raise_if_cancelled`."""


class JobContext:
    """What a running handler sees: its job, a cancel flag and a progress setter."""

    def __init__(self, job: Job, on_change: Callable[[], None]) -> None:
        self._job = job
        self._on_change = on_change
        self._cancel_requested = False

    @property
    def job(self) -> Job:
        """The job as it is now, progress included."""
        return self._job

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked for this job to stop."""
        return self._cancel_requested

    def request_cancel(self) -> None:
        """Ask the handler to stop at its next :meth:`raise_if_cancelled`."""
        self._cancel_requested = True

    def raise_if_cancelled(self) -> None:
        """Stop the handler here if a cancel was requested.

        Raises:
            JobCancelledError: :meth:`request_cancel` was called.
        """
        if self._cancel_requested:
            raise JobCancelledError(f"job {self._job.id} was cancelled on request")

    def set_progress(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` items are finished."""
        self._job = msgspec.structs.replace(
            self._job, progress=Progress(done=done, total=total)
        )
        self._on_change()


Handler = Callable[[JobContext], Awaitable[Mapping[str, Any]]]
"""A job handler: does the work and returns the job's ``result`` summary."""

Clock = Callable[[], float]


class JobQueue(Protocol):
    """Queue operations the daemon and its tests rely on."""

    def register(self, kind: JobKind, handler: Handler) -> None:
        """Make ``handler`` run every job of ``kind``."""
        ...

    async def submit(
        self,
        kind: JobKind,
        path: str,
        *,
        recursive: bool = True,
        priority: Priority = Priority.BACKGROUND,
        params: Mapping[str, Any] | None = None,
    ) -> Job:
        """Queue a job for ``path``, or return the pending job that covers it."""
        ...

    async def get(self, job_id: int) -> Job:
        """Return a job.

        Raises:
            NotFoundError: no job has that id.
        """
        ...

    async def list(self, *, status: JobState | None, limit: int) -> list[Job]:
        """Return up to ``limit`` jobs, newest first, optionally only in ``status``."""
        ...

    async def counts(self) -> dict[str, int]:
        """Return the number of jobs in each state."""
        ...

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending job at once, or ask a running one to stop.

        Raises:
            NotFoundError: no job has that id.
        """
        ...

    async def cancel_under(self, path: str) -> int:
        """Cancel every pending or running job at or under ``path``.

        Returns how many jobs were cancelled or asked to stop.
        """
        ...

    def has_unfinished(self, kind: JobKind, path: str) -> bool:
        """Tell whether a recursive job for exactly ``path`` is pending or running."""
        ...

    def is_idle(self) -> bool:
        """Tell whether no job is pending or running."""
        ...

    async def wait_idle(self) -> None:
        """Wait until no job is pending or running."""
        ...

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = ...) -> None:
        """Recover interrupted jobs, then run workers until cancelled."""
        ...


class AnyioJobQueue:
    """The production queue: job rows in a repository, anyio worker tasks.

    Args:
        repository: where job rows live; must already be open when
            :meth:`run` starts.
        workers: number of jobs that run at the same time.
        job_timeout_s: a job still running after this many seconds is
            cancelled and ends as ``timeout``.
        finished_jobs_keep: finished jobs kept, newest first.
        finished_jobs_max_age_s: finished jobs older than this are deleted.
        clock: the wall clock for job timestamps (Unix seconds).
    """

    def __init__(
        self,
        repository: Repository,
        *,
        workers: int = 2,
        job_timeout_s: float = 3600.0,
        finished_jobs_keep: int = 1000,
        finished_jobs_max_age_s: float = 7 * 24 * 3600.0,
        clock: Clock = time.time,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._repository = repository
        self._workers = workers
        self._job_timeout_s = job_timeout_s
        self._keep = finished_jobs_keep
        self._max_age_s = finished_jobs_max_age_s
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[int, Job] = {}
        self._pending_by_path: dict[tuple[str, str], int] = {}
        self._running: dict[int, JobContext] = {}
        self._retrying = 0
        self._unrecorded_ids = itertools.count(-1, -1)
        self._submit_lock = anyio.Lock()
        self._changed = anyio.Event()

    def register(self, kind: JobKind, handler: Handler) -> None:
        self._handlers[kind.value] = handler

    async def submit(
        self,
        kind: JobKind,
        path: str,
        *,
        recursive: bool = True,
        priority: Priority = Priority.BACKGROUND,
        params: Mapping[str, Any] | None = None,
    ) -> Job:
        async with self._submit_lock:
            covering = self._find_covering(kind.value, path)
            if covering is not None:
                return await self._merge_into(covering, path, recursive, priority)

            job = Job(
                id=0,
                kind=kind.value,
                path=path,
                status=JobState.PENDING,
                created_at=self._clock(),
                params={**(params or {}), "recursive": recursive},
                priority=int(priority),
            )
            try:
                job = await self._repository.insert_job(job)
            except StorageError as exc:
                if priority >= Priority.USER:
                    raise
                # Background work (watcher, settle, reconcile) must not stop
                # the daemon on a full or read-only disk. The job lives only
                # in memory, under a negative id, and runs once writes work.
                job = msgspec.structs.replace(job, id=next(self._unrecorded_ids))
                log.error("job_not_recorded", path=path, error=str(exc))
            self._add_pending(job)
        log.debug("job_queued", job_id=job.id, kind=job.kind, path=job.path)
        self._notify()
        return job

    def _find_covering(self, kind: str, path: str) -> Job | None:
        job_id = self._pending_by_path.get((kind, path))
        if job_id is not None:
            return self._pending[job_id]
        for job_id, job in self._pending.items():
            if (
                job.kind == kind
                and job.params.get("recursive", True)
                and is_same_or_under(path, job.path)
            ):
                return self._pending[job_id]
        return None

    async def _merge_into(
        self, job: Job, path: str, recursive: bool, priority: Priority
    ) -> Job:
        updated = job
        if priority > job.priority:
            updated = msgspec.structs.replace(updated, priority=int(priority))
        if recursive and path == job.path and not job.params.get("recursive", True):
            params = {**updated.params, "recursive": True}
            updated = msgspec.structs.replace(updated, params=params)
        if updated is not job:
            # Replace the pending entry before the write: a worker may take
            # the job while the write waits, and putting it back afterwards
            # would run the same job twice.
            self._pending[job.id] = updated
            await self._repository.update_job(updated)
        return updated

    def _add_pending(self, job: Job) -> None:
        self._pending[job.id] = job
        self._pending_by_path[(job.kind, job.path)] = job.id

    def _remove_pending(self, job: Job) -> None:
        del self._pending[job.id]
        if self._pending_by_path.get((job.kind, job.path)) == job.id:
            del self._pending_by_path[(job.kind, job.path)]

    async def get(self, job_id: int) -> Job:
        live = self._live_job(job_id)
        if live is not None:
            return live
        job = await self._repository.get_job(job_id)
        if job is None:
            raise NotFoundError(
                f"job {job_id} not found; it never existed or was pruned after "
                "finishing (list recent jobs with jobs.list)"
            )
        return job

    def _live_job(self, job_id: int) -> Job | None:
        if job_id in self._running:
            return self._running[job_id].job
        return self._pending.get(job_id)

    async def list(self, *, status: JobState | None, limit: int) -> list[Job]:
        jobs = await self._repository.list_jobs(status=status, limit=limit)
        return [self._live_job(job.id) or job for job in jobs]

    async def counts(self) -> dict[str, int]:
        return await self._repository.count_jobs()

    async def cancel(self, job_id: int) -> Job:
        async with self._submit_lock:
            if job_id in self._pending:
                job = self._pending[job_id]
                self._remove_pending(job)
                cancelled = msgspec.structs.replace(
                    job,
                    status=JobState.CANCELLED,
                    finished_at=self._clock(),
                    error="cancelled on request before it started",
                )
                await self._repository.update_job(cancelled)
                self._notify()
                return cancelled
        if job_id in self._running:
            context = self._running[job_id]
            context.request_cancel()
            return context.job
        return await self.get(job_id)

    async def cancel_under(self, path: str) -> int:
        pending = [
            job.id for job in self._pending.values() if is_same_or_under(job.path, path)
        ]
        running = [
            job_id
            for job_id, context in self._running.items()
            if is_same_or_under(context.job.path, path)
        ]
        for job_id in pending + running:
            await self.cancel(job_id)
        return len(pending) + len(running)

    def has_unfinished(self, kind: JobKind, path: str) -> bool:
        jobs = [*self._pending.values(), *(c.job for c in self._running.values())]
        return any(
            job.kind == kind.value
            and job.path == path
            and job.params.get("recursive", True)
            for job in jobs
        )

    def is_idle(self) -> bool:
        return not self._pending and not self._running and not self._retrying

    async def wait_idle(self) -> None:
        while not self.is_idle():
            await self._changed.wait()

    def _notify(self) -> None:
        # Wake every task waiting for a change; later waiters get a new event.
        self._changed.set()
        self._changed = anyio.Event()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        requeued = await self._repository.requeue_interrupted_jobs()
        for job in await self._repository.unfinished_jobs():
            if job.id not in self._pending:
                self._add_pending(job)
        if requeued:
            log.info("jobs_requeued", count=requeued)

        async with anyio.create_task_group() as task_group:
            for worker in range(self._workers):
                task_group.start_soon(self._work, worker)
            task_group.start_soon(self._prune_periodically)
            task_status.started()
            self._notify()

    async def _prune_periodically(self) -> None:
        while True:
            try:
                pruned = await self._repository.prune_jobs(
                    finished_before=self._clock() - self._max_age_s, keep=self._keep
                )
            except StorageError as exc:
                log.warning("jobs_prune_failed", error=str(exc))
                pruned = 0
            if pruned:
                log.info("jobs_pruned", count=pruned)
            await anyio.sleep(_PRUNE_INTERVAL_S)

    async def _work(self, worker: int) -> None:
        failures = 0
        while True:
            job = await self._take_next()
            with structlog.contextvars.bound_contextvars(job_id=job.id, worker=worker):
                try:
                    await self._run_job(job)
                except StorageError as exc:
                    failures += 1
                    await self._retry_later(job, exc, failures)
                else:
                    failures = 0

    async def _retry_later(self, job: Job, exc: StorageError, failures: int) -> None:
        """Put a job that could not write to the catalog back after a delay."""
        delay_s = min(2.0 ** (failures - 1), _STORAGE_RETRY_MAX_S)
        log.error("job_storage_failed", path=job.path, error=str(exc), retry_s=delay_s)
        # Counted as busy meanwhile, so status never reports idle with a job
        # still to do.
        self._retrying += 1
        try:
            await anyio.sleep(delay_s)
        finally:
            self._retrying -= 1
        retry = msgspec.structs.replace(
            job, status=JobState.PENDING, started_at=None, progress=None
        )
        self._add_pending(retry)
        self._notify()

    async def _take_next(self) -> Job:
        while not self._pending:
            await self._changed.wait()
        # Highest priority first, then the oldest.
        job = max(self._pending.values(), key=lambda job: (job.priority, -job.id))
        self._remove_pending(job)
        running = msgspec.structs.replace(
            job, status=JobState.RUNNING, started_at=self._clock()
        )
        self._running[job.id] = JobContext(running, self._notify)
        return running

    async def _run_job(self, job: Job) -> None:
        context = self._running[job.id]
        state: JobState | None = None
        result: Mapping[str, Any] | None = None
        error: str | None = None
        storage_failed = False
        try:
            await self._repository.update_job(job)
            log.info("job_started", kind=job.kind, path=job.path)
            state, result, error = await self._call_handler(context)
        except StorageError:
            storage_failed = True
            raise
        finally:
            # The job stays in _running until its row is written, so no
            # status shows the queue idle while its row is still running.
            try:
                if state is not None:
                    finished = msgspec.structs.replace(
                        context.job,
                        status=state,
                        finished_at=self._clock(),
                        result=None if result is None else dict(result),
                        error=error,
                    )
                    with anyio.CancelScope(shield=True):
                        await self._repository.update_job(finished)
                    log.info("job_finished", status=state.value, error=error)
                else:
                    # A shutdown or a failed catalog write (retried by
                    # _retry_later). The finished batches are written, so the
                    # job resumes from pending and skips them. After a crash,
                    # run() requeues the row left running.
                    await self._requeue_interrupted(job, shutdown=not storage_failed)
            finally:
                del self._running[job.id]
                self._notify()

    async def _requeue_interrupted(self, job: Job, *, shutdown: bool) -> None:
        """Put a job that stopped without a state back to pending.

        ``shutdown`` is false after a failed catalog write, which
        ``_retry_later`` logs itself.
        """
        interrupted = msgspec.structs.replace(
            job, status=JobState.PENDING, started_at=None, progress=None
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await self._repository.update_job(interrupted)
            except DaemonError as exc:
                log.warning("job_requeue_failed", error=str(exc))
                return
        if shutdown:
            log.info("job_interrupted", kind=job.kind, path=job.path)

    async def _call_handler(
        self, context: JobContext
    ) -> tuple[JobState, Mapping[str, Any] | None, str | None]:
        job = context.job
        handler = self._handlers.get(job.kind)
        if handler is None:
            return JobState.FAILED, None, f"no handler registered for kind {job.kind!r}"

        deadline = anyio.current_time() + self._job_timeout_s
        result: Mapping[str, Any] | None = None
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                result = await handler(context)
        except JobCancelledError as exc:
            return JobState.CANCELLED, None, str(exc)
        except StorageError:
            # The catalog could not be written: the job runs again once it
            # can, instead of ending as failed with its files unrecorded.
            raise
        except DaemonError as exc:
            return JobState.FAILED, None, str(exc)
        except Exception as exc:
            # A bug in one handler must fail that job, not stop the worker.
            log.exception("job_handler_crashed", kind=job.kind, path=job.path)
            return JobState.FAILED, None, f"internal error: {type(exc).__name__}: {exc}"

        if scope.cancelled_caught:
            timeout = _format_seconds(self._job_timeout_s)
            return JobState.TIMEOUT, None, f"timed out after {timeout} s"
        return JobState.COMPLETE, result, None


def _format_seconds(seconds: float) -> str:
    if math.isclose(seconds, round(seconds)):
        return str(round(seconds))
    return f"{seconds:g}"


class MemoryJobQueue(AnyioJobQueue):
    """The queue with its job rows in a :class:`MemoryRepository`.

    The scheduling is the production code; only storage differs, so tests of
    other parts can run jobs without a database.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        job_timeout_s: float = 3600.0,
        finished_jobs_keep: int = 1000,
        finished_jobs_max_age_s: float = 7 * 24 * 3600.0,
        clock: Clock = time.time,
    ) -> None:
        self._memory = MemoryRepository()
        super().__init__(
            self._memory,
            workers=workers,
            job_timeout_s=job_timeout_s,
            finished_jobs_keep=finished_jobs_keep,
            finished_jobs_max_age_s=finished_jobs_max_age_s,
            clock=clock,
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._memory.open()
        await super().run(task_status=task_status)
