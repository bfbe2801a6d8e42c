"""An event source on the Rust core's watcher, which reports every possible loss.

Unlike :class:`~reelwatch.watcher.WatchfilesSource`, this source turns a kernel
queue overflow, a folder that could not be watched, the inotify watch limit
and an unmounted root into rescans and root states instead of losing them.
It is the facade for the watcher part of ``reelwatch._core``; see
``docs/decisions/0003-watcher.md`` for what each change kind means.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog

from .core import CoreUnavailableError
from .models import RootState, RootStatus
from .watcher import Change, ChangeKind, WatchBatch

if TYPE_CHECKING:
    from ._core import Watcher as CoreWatcher

__all__ = ["CoreEventSource", "core_watcher_available"]

log = structlog.get_logger(__name__)

ChangeRow = tuple[str, bytes, bytes | None, str | None]
WatcherFactory = Callable[..., "CoreWatcher"]

# Maximum time one blocking wait runs in its worker thread, which bounds how
# long the stream takes to end after the stop event is set (a reload). Each
# slice wakes the event loop, so a short one costs idle CPU; cancellation
# (shutdown) does not wait for it.
_WAIT_SLICE_MS = 2000

_SIMPLE_KINDS = {
    "created": ChangeKind.ADDED,
    "modified": ChangeKind.MODIFIED,
    # A close after writing is a settling hint; the scanner checks the file.
    "closed_write": ChangeKind.MODIFIED,
    "removed": ChangeKind.DELETED,
}


# NOTE: WatchBatch.moves is newer than this module's first version. Without it
# a rename is reported as deleted plus added.
_BATCH_HAS_MOVES = "moves" in {field.name for field in dataclasses.fields(WatchBatch)}


def core_watcher_available() -> bool:
    """Return whether the compiled core provides ``Watcher``."""
    try:
        module = importlib.import_module("reelwatch._core")
    except ImportError:
        return False
    return hasattr(module, "Watcher")


def _default_factory() -> WatcherFactory:
    try:
        module = importlib.import_module("reelwatch._core")
    except ImportError as exc:
        raise CoreUnavailableError(
            f"the compiled core reelwatch._core cannot be imported ({exc}); build "
            "it with 'maturin develop' or use the watchfiles event source"
        ) from exc
    factory: WatcherFactory = module.Watcher
    return factory


class CoreEventSource:
    """An :class:`~reelwatch.watcher.EventSource` on ``reelwatch._core.Watcher``.

    The first batch reports every root's state. Later batches report a root
    again whenever its state or message changes: ``missing`` when deleted or
    unmounted, ``polling`` after the watch limit was reached. Paired renames
    arrive in ``moves``; the core's ``rescan`` changes, which include queue
    overflows and new or moved-in folders, arrive in ``rescan``.

    Args:
        ignore_globs: names or relative paths (globs) that produce no events.
        force_polling: poll every root instead of using inotify.
        poll_interval_ms: time between two scans of a polled root.
        debounce_ms: longest time one batch collects changes.
        heartbeat_s: an empty batch is yielded after this long without one.
        watcher_factory: builds the core watcher; tests pass one that keeps
            the watcher to inject faults. Defaults to ``reelwatch._core.Watcher``.
    """

    def __init__(
        self,
        *,
        ignore_globs: Sequence[str] = (),
        force_polling: bool = False,
        poll_interval_ms: int = 10_000,
        debounce_ms: int = 1_600,
        heartbeat_s: float = 5.0,
        watcher_factory: WatcherFactory | None = None,
    ) -> None:
        self._ignore_globs = list(ignore_globs)
        self._force_polling = force_polling
        self._poll_interval_ms = poll_interval_ms
        self._debounce_ms = debounce_ms
        self._heartbeat_s = heartbeat_s
        self._factory = watcher_factory

    async def watch(
        self, roots: Sequence[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        """Yield batches until ``stop_event`` is set; see the class docstring."""
        factory = self._factory or _default_factory()
        root_list = list(roots)
        watcher = await anyio.to_thread.run_sync(
            lambda: factory(
                root_list,
                ignore=self._ignore_globs,
                force_polling=self._force_polling,
                poll_interval_ms=self._poll_interval_ms,
                debounce_ms=self._debounce_ms,
            )
        )
        reported: dict[str, RootStatus] = {}
        try:
            yield WatchBatch(roots=_changed_roots(watcher.roots(), reported))
            quiet_since = anyio.current_time()
            while not stop_event.is_set():
                rows: list[ChangeRow] = await anyio.to_thread.run_sync(
                    watcher.wait, _WAIT_SLICE_MS, abandon_on_cancel=True
                )
                statuses = _changed_roots(watcher.roots(), reported)
                now = anyio.current_time()
                if rows or statuses or now - quiet_since >= self._heartbeat_s:
                    quiet_since = now
                    yield _batch(rows, statuses)
        finally:
            # Closing wakes a wait that a cancelled worker thread still runs.
            watcher.close()


def _changed_roots(
    rows: Iterable[tuple[bytes, str, str | None]], reported: dict[str, RootStatus]
) -> tuple[RootStatus, ...]:
    changed = []
    for raw_path, state, message in rows:
        path = os.fsdecode(raw_path)
        status = RootStatus(path=path, state=RootState(state), error=message)
        if reported.get(path) != status:
            reported[path] = status
            changed.append(status)
    return tuple(changed)


def _batch(rows: Iterable[ChangeRow], roots: tuple[RootStatus, ...]) -> WatchBatch:
    changes: set[Change] = set()
    rescan: dict[str, None] = {}
    moves: list[tuple[str, str]] = []
    for kind, raw_path, raw_target, message in rows:
        path = os.fsdecode(raw_path)
        if kind in _SIMPLE_KINDS:
            changes.add(Change(_SIMPLE_KINDS[kind], path))
        elif kind == "renamed" and raw_target is not None:
            moves.append((path, os.fsdecode(raw_target)))
        elif kind == "rescan":
            log.info("watch_rescan", path=path, reason=message)
            rescan[path] = None
        elif kind == "watch_error":
            log.warning("watch_error", path=path, error=message)
        elif kind in ("root_missing", "unmounted"):
            # The root's new state comes from Watcher.roots(). A filesystem
            # unmounted below a root is only logged: a rescan would delete
            # entries that are merely offline.
            log.warning("watch_root_lost", path=path, kind=kind, error=message)
        else:
            log.warning("watch_unknown_change", kind=kind, path=path)
    extra: dict[str, Any] = {}
    if _BATCH_HAS_MOVES:
        extra["moves"] = tuple(moves)
    else:
        for old, new in moves:
            changes.add(Change(ChangeKind.DELETED, old))
            changes.add(Change(ChangeKind.ADDED, new))
    return WatchBatch(
        changes=frozenset(changes), rescan=tuple(rescan), roots=roots, **extra
    )
