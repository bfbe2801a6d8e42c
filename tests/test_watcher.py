"""Tests for turning filesystem events into scan jobs, and for the watchfiles source."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest

from fake_core import FakeCore, write_fake_video
from reelwatch.config import Config
from reelwatch.jobs import AnyioJobQueue
from reelwatch.models import Job, RootState, RootStatus
from reelwatch.repository import MemoryRepository
from reelwatch.watcher import (
    Change,
    ChangeKind,
    WatchBatch,
    Watcher,
    WatchfilesSource,
)

pytestmark = pytest.mark.anyio


class ScriptedSource:
    """An event source that yields prepared batches, then ends."""

    def __init__(self, batches: Sequence[WatchBatch]) -> None:
        self.batches = list(batches)

    async def watch(
        self, roots: Sequence[str], stop_event: anyio.Event
    ) -> AsyncIterator[WatchBatch]:
        for batch in self.batches:
            yield batch


class Setup:
    """A watcher feeding a queue whose workers are not started, so jobs stay put."""

    def __init__(self, config: Config, source: ScriptedSource) -> None:
        self.repository = MemoryRepository()
        self.queue = AnyioJobQueue(self.repository)
        self.statuses: list[RootStatus] = []
        self.watcher = Watcher(
            source=source,
            queue=self.queue,
            core=FakeCore(),
            config=config,
            on_root_status=self.statuses.append,
        )

    async def jobs(self) -> list[tuple[str, bool]]:
        jobs: list[Job] = await self.queue.list(status=None, limit=1000)
        return sorted((job.path, job.params["recursive"]) for job in jobs)


@pytest.fixture
async def setup(config: Config) -> Setup:
    setup = Setup(config, ScriptedSource([]))
    await setup.repository.open()
    return setup


def changes(*items: tuple[ChangeKind, Path]) -> frozenset[Change]:
    return frozenset(Change(kind, str(path)) for kind, path in items)


async def test_changed_video_files_become_file_scans(
    setup: Setup, library: Path
) -> None:
    added = write_fake_video(library / "new.mp4")
    modified = write_fake_video(library / "old.mkv")
    (library / "cover.jpg").write_bytes(b"jpeg")

    await setup.watcher.handle_changes(
        changes(
            (ChangeKind.ADDED, added),
            (ChangeKind.MODIFIED, modified),
            (ChangeKind.ADDED, library / "cover.jpg"),
        )
    )

    assert await setup.jobs() == [(str(added), False), (str(modified), False)]


async def test_deleted_path_is_scanned_whatever_its_name(
    setup: Setup, library: Path
) -> None:
    await setup.watcher.handle_changes(
        changes(
            (ChangeKind.DELETED, library / "gone.mp4"),
            (ChangeKind.DELETED, library / "Season 1"),
        )
    )

    assert await setup.jobs() == [
        (str(library / "Season 1"), False),
        (str(library / "gone.mp4"), False),
    ]


async def test_new_folder_is_scanned_whole(setup: Setup, library: Path) -> None:
    folder = library / "Season 2"
    write_fake_video(folder / "e1.mkv")

    await setup.watcher.handle_changes(
        changes((ChangeKind.ADDED, folder), (ChangeKind.ADDED, folder / "e1.mkv"))
    )

    assert await setup.jobs() == [(str(folder), True)]


async def test_ignored_and_outside_paths_are_dropped(
    setup: Setup, library: Path, tmp_path: Path
) -> None:
    outside = write_fake_video(tmp_path / "elsewhere" / "x.mp4")
    (library / "link.mp4").symlink_to(outside)
    partial = write_fake_video(library / "movie.mp4.part")

    await setup.watcher.handle_changes(
        changes(
            (ChangeKind.ADDED, partial),
            (ChangeKind.ADDED, library / ".hidden" / "a.mp4"),
            (ChangeKind.ADDED, outside),
            (ChangeKind.ADDED, library / "link.mp4"),
        )
    )

    assert await setup.jobs() == []


async def test_many_changes_in_one_folder_become_one_scan(
    setup: Setup, library: Path
) -> None:
    folder = library / "burst"
    paths = [write_fake_video(folder / f"{i}.mp4") for i in range(40)]
    single = write_fake_video(library / "single.mp4")

    await setup.watcher.handle_changes(
        changes(
            *((ChangeKind.ADDED, path) for path in paths),
            (ChangeKind.ADDED, single),
        )
    )

    assert await setup.jobs() == [(str(folder), True), (str(single), False)]


async def test_root_states_and_rescans_are_passed_on(
    config: Config, library: Path
) -> None:
    root = str(library)
    source = ScriptedSource(
        [
            WatchBatch(roots=(RootStatus(path=root, state=RootState.MISSING),)),
            WatchBatch(
                rescan=(root,),
                roots=(RootStatus(path=root, state=RootState.WATCHING),),
            ),
        ]
    )
    setup = Setup(config, source)
    await setup.repository.open()

    await setup.watcher.run(anyio.Event())

    assert [status.state for status in setup.statuses] == [
        RootState.MISSING,
        RootState.WATCHING,
    ]
    # One scan: the missing root's (which marks entries offline), coalesced
    # with the rescan when it is back.
    assert await setup.jobs() == [(root, True)]


class TestMoves:
    async def test_paired_rename_moves_entries_then_scans(
        self, config: Config, library: Path
    ) -> None:
        old = library / "Show"
        new = library / "show"
        new.mkdir()
        moved: list[tuple[str, str, str]] = []

        async def record_move(old: str, new: str, root: str) -> None:
            moved.append((old, new, root))

        source = ScriptedSource([WatchBatch(moves=((str(old), str(new)),))])
        setup = Setup(config, source)
        setup.watcher = Watcher(
            source=source,
            queue=setup.queue,
            core=FakeCore(),
            config=config,
            on_root_status=setup.statuses.append,
            on_move=record_move,
        )
        await setup.repository.open()

        await setup.watcher.run(anyio.Event())

        assert moved == [(str(old), str(new), str(library))]
        assert await setup.jobs() == sorted([(str(new), True), (str(old), False)])

    async def test_rename_to_ignored_name_is_no_move(
        self, config: Config, library: Path
    ) -> None:
        """Renamed to ``x.mp4.part``, the file leaves the catalog instead."""
        old = library / "x.mp4"
        moved: list[tuple[str, str, str]] = []

        async def record_move(old: str, new: str, root: str) -> None:
            moved.append((old, new, root))

        source = ScriptedSource(
            [WatchBatch(moves=((str(old), str(library / "x.mp4.part")),))]
        )
        setup = Setup(config, source)
        setup.watcher = Watcher(
            source=source,
            queue=setup.queue,
            core=FakeCore(),
            config=config,
            on_root_status=setup.statuses.append,
            on_move=record_move,
        )
        await setup.repository.open()

        await setup.watcher.run(anyio.Event())

        assert moved == []
        assert await setup.jobs() == [(str(old), False)]


async def next_batch_with(batches: AsyncIterator[WatchBatch], path: str) -> WatchBatch:
    """Read batches until one mentions ``path`` as a change, rescan or root."""
    with anyio.fail_after(15):
        for _ in itertools.count():
            batch = await anext(batches)
            mentioned = {change.path for change in batch.changes}
            mentioned.update(batch.rescan)
            mentioned.update(status.path for status in batch.roots)
            if path in mentioned:
                return batch
    raise AssertionError("unreachable")


async def next_heartbeat(batches: AsyncIterator[WatchBatch]) -> None:
    """Read batches until an empty one, which shows the watch is running."""
    with anyio.fail_after(15):
        while await anext(batches) != WatchBatch():
            pass


class TestWatchfilesSource:
    async def test_reports_root_then_added_file(self, library: Path) -> None:
        source = WatchfilesSource(ignore_globs=(".*",), root_check_interval_s=0.2)
        stop = anyio.Event()
        batches = source.watch([str(library)], stop)

        first = await anext(batches)
        await next_heartbeat(batches)
        path = write_fake_video(library / "a.mp4")
        write_fake_video(library / ".hidden.mp4")
        batch = await next_batch_with(batches, str(path))
        stop.set()
        await batches.aclose()  # type: ignore[attr-defined]

        assert first.roots == (RootStatus(path=str(library), state=RootState.WATCHING),)
        assert Change(ChangeKind.ADDED, str(path)) in batch.changes
        assert all(".hidden" not in change.path for change in batch.changes)

    async def test_missing_root_reported_then_rescanned_when_created(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "later"
        source = WatchfilesSource(root_check_interval_s=0.1)
        stop = anyio.Event()
        batches = source.watch([str(root)], stop)

        first = await anext(batches)
        root.mkdir()
        back = await next_batch_with(batches, str(root))
        stop.set()
        await batches.aclose()  # type: ignore[attr-defined]

        assert [status.state for status in first.roots] == [RootState.MISSING]
        assert [status.state for status in back.roots] == [RootState.WATCHING]
        assert back.rescan == (str(root),)
