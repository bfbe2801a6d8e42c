"""Tests of the event source built on the Rust core's watcher, on real folders."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

pytest.importorskip(
    "reelwatch._core", reason="the extension is not built; run 'maturin develop'"
)
from reelwatch._core import Watcher as CoreWatcher
from reelwatch.models import RootState, RootStatus
from reelwatch.notify_source import CoreEventSource, core_watcher_available
from reelwatch.watcher import Change, ChangeKind, WatchBatch

pytestmark = pytest.mark.anyio


class KeepingFactory:
    """Builds fast core watchers and keeps the last one, to inject faults."""

    def __init__(self) -> None:
        self.watcher: CoreWatcher | None = None

    def __call__(self, roots: list[str], **options: object) -> CoreWatcher:
        options.update(step_ms=30, root_check_interval_ms=100, poll_interval_ms=100)
        self.watcher = CoreWatcher(roots, **options)  # type: ignore[arg-type]
        return self.watcher


async def next_batch_where(
    batches: AsyncIterator[WatchBatch], wanted: Callable[[WatchBatch], bool]
) -> WatchBatch:
    with anyio.fail_after(10):
        async for batch in batches:
            if wanted(batch):
                return batch
    raise AssertionError("the source ended before the expected batch")


def has_rename(batch: WatchBatch, old: Path, new: Path) -> bool:
    """Whether ``batch`` reports the rename, as a move or as deleted plus added."""
    moves = getattr(batch, "moves", ())
    as_changes = {
        Change(ChangeKind.DELETED, str(old)),
        Change(ChangeKind.ADDED, str(new)),
    }
    return (str(old), str(new)) in moves or as_changes <= batch.changes


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


def make_source(factory: KeepingFactory, **options: object) -> CoreEventSource:
    return CoreEventSource(
        debounce_ms=300,
        heartbeat_s=0.2,
        watcher_factory=factory,
        **options,  # type: ignore[arg-type]
    )


async def test_core_watcher_is_available() -> None:
    assert core_watcher_available()


async def test_first_batch_reports_every_root(library: Path, tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    source = make_source(KeepingFactory())
    stop = anyio.Event()
    batches = source.watch([str(library), str(absent)], stop)

    first = await anext(batches)
    stop.set()
    await batches.aclose()  # type: ignore[attr-defined]

    assert first.roots == (
        RootStatus(path=str(library), state=RootState.WATCHING),
        RootStatus(
            path=str(absent), state=RootState.MISSING, error="the root does not exist"
        ),
    )


async def test_added_file_and_rename(library: Path) -> None:
    source = make_source(KeepingFactory(), ignore_globs=["*.part"])
    stop = anyio.Event()
    batches = source.watch([str(library)], stop)
    await anext(batches)

    part = library / "film.mkv.part"
    part.write_bytes(b"x")
    other = library / "other.mkv"
    other.write_bytes(b"x")
    added = await next_batch_where(batches, lambda batch: bool(batch.changes))
    final = library / "film.mkv"
    renamed = library / "renamed.mkv"
    other.rename(renamed)
    part.rename(final)
    moved = await next_batch_where(
        batches, lambda batch: has_rename(batch, other, renamed)
    )
    stop.set()
    await batches.aclose()  # type: ignore[attr-defined]

    assert Change(ChangeKind.ADDED, str(other)) in added.changes
    assert all(".part" not in change.path for change in added.changes)
    assert has_rename(moved, other, renamed)
    # The download renamed from an ignored name arrives as a new file.
    assert Change(ChangeKind.ADDED, str(final)) in moved.changes


async def test_overflow_becomes_rescan(library: Path) -> None:
    factory = KeepingFactory()
    source = make_source(factory)
    stop = anyio.Event()
    batches = source.watch([str(library)], stop)
    await anext(batches)
    assert factory.watcher is not None

    factory.watcher._debug_inject("overflow")
    batch = await next_batch_where(batches, lambda batch: bool(batch.rescan))
    stop.set()
    await batches.aclose()  # type: ignore[attr-defined]

    assert batch.rescan == (str(library),)


async def test_watch_limit_reports_polling(library: Path) -> None:
    factory = KeepingFactory()
    source = make_source(factory)
    stop = anyio.Event()
    batches = source.watch([str(library)], stop)
    await anext(batches)
    assert factory.watcher is not None

    factory.watcher._debug_inject("watch_limit", root=0)
    batch = await next_batch_where(batches, lambda batch: bool(batch.roots))
    stop.set()
    await batches.aclose()  # type: ignore[attr-defined]

    assert [status.state for status in batch.roots] == [RootState.POLLING]
    assert "max_user_watches" in (batch.roots[0].error or "")
    assert batch.rescan == (str(library),)


async def test_deleted_root_goes_missing_then_back(library: Path) -> None:
    source = make_source(KeepingFactory())
    stop = anyio.Event()
    batches = source.watch([str(library)], stop)
    await anext(batches)

    shutil.rmtree(library)
    gone = await next_batch_where(batches, lambda batch: bool(batch.roots))
    os.mkdir(library)
    back = await next_batch_where(batches, lambda batch: bool(batch.roots))
    stop.set()
    await batches.aclose()  # type: ignore[attr-defined]

    assert [status.state for status in gone.roots] == [RootState.MISSING]
    assert [status.state for status in back.roots] == [RootState.WATCHING]
    assert back.rescan == (str(library),)


async def test_stop_event_ends_the_stream(library: Path) -> None:
    source = make_source(KeepingFactory())
    stop = anyio.Event()
    batches = source.watch([str(library)], stop)
    await anext(batches)

    stop.set()
    with anyio.fail_after(5):
        remaining = [batch async for batch in batches]

    assert len(remaining) <= 1
