"""Tests for the scan handler on real temporary folders, with the fake core."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import pytest

from conftest import MakeConfig
from fake_core import FakeCore, write_fake_video
from reelwatch.config import Config
from reelwatch.core import ProbeResult, WalkError, WalkResult
from reelwatch.errors import PathNotAllowedError
from reelwatch.jobs import JobContext
from reelwatch.models import Job, JobState, Video
from reelwatch.repository import MemoryRepository
from reelwatch.scanner import (
    RemovedEntries,
    Scanner,
    ScanResult,
    SettleTracker,
    has_video_extension,
    is_ignored,
)

pytestmark = pytest.mark.anyio


class Harness:
    """A scanner over a MemoryRepository, recording the files it defers."""

    def __init__(self, config: Config, core: FakeCore, clock: float | None) -> None:
        self.repository = MemoryRepository()
        self.submitted: list[str] = []
        self.settle = SettleTracker(self._submit)
        self.scanner = Scanner(
            repository=self.repository,
            core=core,
            config=config,
            settle=self.settle,
            clock=(lambda: clock) if clock is not None else time.time,
        )

    async def _submit(self, path: str) -> None:
        self.submitted.append(path)

    async def paths(self) -> list[str]:
        page = await self.repository.list_videos(under=None, limit=1000, cursor=None)
        return [video.path for video in page.videos]


@pytest.fixture
async def harness(config: Config, fake_core: FakeCore) -> Harness:
    harness = Harness(config, fake_core, clock=None)
    await harness.repository.open()
    return harness


async def test_new_files_are_probed_and_stored(harness: Harness, library: Path) -> None:
    write_fake_video(library / "a.mp4", duration_s=3.5, video_codec="hevc")
    write_fake_video(library / "show" / "b.mkv", audio_codec=None)

    result = await harness.scanner.scan(str(library))

    assert (result.scanned, result.new, result.updated, result.removed) == (2, 2, 0, 0)
    assert result.errors == []
    video = await harness.repository.get_video(str(library / "a.mp4"))
    assert video is not None
    assert video.duration_s == 3.5
    assert video.video_codec == "hevc"
    assert video.width == 1920
    assert video.frame_rate == "25/1"
    assert video.error is None
    assert video.root == str(library)
    other = await harness.repository.get_video(str(library / "show" / "b.mkv"))
    assert other is not None
    assert other.audio_codec is None


async def test_unchanged_files_are_not_probed_again(
    harness: Harness, library: Path, fake_core: FakeCore
) -> None:
    write_fake_video(library / "a.mp4")
    write_fake_video(library / "b.mp4")
    await harness.scanner.scan(str(library))
    fake_core.probed.clear()

    result = await harness.scanner.scan(str(library))

    assert fake_core.probed_paths == []
    assert (result.scanned, result.skipped, result.new, result.updated) == (2, 2, 0, 0)


async def test_changed_file_is_updated_and_keeps_id(
    harness: Harness, library: Path, fake_core: FakeCore
) -> None:
    path = write_fake_video(library / "a.mp4", width=640)
    await harness.scanner.scan(str(library))
    before = await harness.repository.get_video(str(path))
    fake_core.probed.clear()

    write_fake_video(path, width=1280, height=720)
    result = await harness.scanner.scan(str(library))
    after = await harness.repository.get_video(str(path))

    assert result.updated == 1
    assert fake_core.probed_paths == [str(path)]
    assert before is not None and after is not None
    assert after.id == before.id
    assert (after.width, after.height) == (1280, 720)


class TestMoves:
    async def test_renamed_file_keeps_id_without_probe(
        self, harness: Harness, library: Path, fake_core: FakeCore
    ) -> None:
        old = write_fake_video(library / "Movie.mp4")
        await harness.scanner.scan(str(library))
        before = await harness.repository.get_video(str(old))
        fake_core.probed.clear()

        new = library / "movie.mp4"
        os.rename(old, new)
        result = await harness.scanner.scan(str(library))
        after = await harness.repository.get_video(str(new))

        assert result.moved == 1
        assert result.probed == 0
        assert fake_core.probed_paths == []
        assert await harness.paths() == [str(new)]
        assert before is not None and after is not None
        assert after.id == before.id

    async def test_old_place_scanned_first_still_keeps_id(
        self, harness: Harness, library: Path
    ) -> None:
        """The scan of the old folder deletes the entries before the scan of
        the new folder reads them, so the ids come back from memory."""
        old = write_fake_video(library / "a" / "x.mp4")
        await harness.scanner.scan(str(library))
        before = await harness.repository.get_video(str(old))

        os.rename(library / "a", library / "b")
        removed = await harness.scanner.scan(str(library / "a"))
        moved = await harness.scanner.scan(str(library / "b"))
        after = await harness.repository.get_video(str(library / "b" / "x.mp4"))

        assert removed.removed == 1
        assert moved.moved == 1
        assert before is not None and after is not None
        assert after.id == before.id

    async def test_new_hard_link_is_its_own_entry(
        self, harness: Harness, library: Path
    ) -> None:
        first = write_fake_video(library / "a.mp4")
        await harness.scanner.scan(str(library))
        original = await harness.repository.get_video(str(first))

        os.link(first, library / "b.mp4")
        result = await harness.scanner.scan(str(library))
        linked = await harness.repository.get_video(str(library / "b.mp4"))

        assert result.moved == 0
        assert result.new == 1
        assert original is not None and linked is not None
        assert linked.id != original.id
        assert await harness.paths() == [str(first), str(library / "b.mp4")]

    async def test_replaced_file_is_not_a_move(
        self, harness: Harness, library: Path
    ) -> None:
        """Another file that reuses a deleted file's inode has another size or
        mtime, so it gets a new entry."""
        old = write_fake_video(library / "a.mp4", width=640)
        await harness.scanner.scan(str(library))
        before = await harness.repository.get_video(str(old))
        old.unlink()
        await harness.scanner.scan(str(library))

        new = write_fake_video(library / "b.mp4", width=1280, video_codec="hevc")
        result = await harness.scanner.scan(str(library))
        after = await harness.repository.get_video(str(new))

        assert result.moved == 0
        assert before is not None and after is not None
        assert after.id != before.id


async def test_file_from_another_device_keeps_id_by_fingerprint(
    harness: Harness, library: Path, fake_core: FakeCore
) -> None:
    """A cross-device move is a copy and a delete: the new file has a new
    device and inode, and the entry is found by size and content fingerprint."""
    new = write_fake_video(library / "film.mp4")
    [fingerprint] = await fake_core.fingerprint([str(new)])
    assert fingerprint.digest is not None
    gone = str(library / "old drive" / "film.mp4")
    await harness.repository.upsert_videos(
        [
            Video(
                id=0,
                path=gone,
                root=str(library),
                size=new.stat().st_size,
                mtime_ns=1,
                device=new.stat().st_dev + 1,
                inode=7,
                duration_s=12.5,
                complete=True,
            )
        ]
    )
    await harness.repository.set_fingerprints([(gone, fingerprint.digest)])
    before = await harness.repository.get_video(gone)

    result = await harness.scanner.scan(str(new))
    after = await harness.repository.get_video(str(new))

    assert result.moved == 1
    assert result.probed == 0
    assert await harness.paths() == [str(new)]
    assert before is not None and after is not None
    assert after.id == before.id
    assert after.device == new.stat().st_dev


async def test_empty_mount_point_marks_entries_offline(
    harness: Harness, library: Path
) -> None:
    """Entries on another device than their now empty folder are from an
    unmounted drive: they go offline instead of leaving the catalog."""
    mount_point = library / "drive"
    mount_point.mkdir()
    other_device = os.stat(mount_point).st_dev + 1
    await harness.repository.upsert_videos(
        [
            Video(
                id=0,
                path=str(mount_point / "film.mkv"),
                root=str(library),
                size=10,
                mtime_ns=1,
                device=other_device,
                inode=7,
            )
        ]
    )

    result = await harness.scanner.scan(str(mount_point))
    entry = await harness.repository.get_video(str(mount_point / "film.mkv"))

    assert result.removed == 0
    assert entry is not None
    assert entry.offline is True


async def test_overlapping_scans_probe_each_file_once(
    harness: Harness, library: Path, fake_core: FakeCore
) -> None:
    for index in range(40):
        write_fake_video(library / f"{index:02d}.mp4")

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(harness.scanner.scan, str(library))
        task_group.start_soon(harness.scanner.scan, str(library))

    assert sorted(fake_core.probed_paths) == sorted(await harness.paths())
    assert harness.scanner.probes_total == 40


async def test_deleted_file_is_removed(harness: Harness, library: Path) -> None:
    write_fake_video(library / "a.mp4")
    deleted = write_fake_video(library / "b.mp4")
    await harness.scanner.scan(str(library))

    deleted.unlink()
    result = await harness.scanner.scan(str(library))

    assert result.removed == 1
    assert await harness.paths() == [str(library / "a.mp4")]


async def test_scan_of_vanished_folder_removes_its_entries(
    harness: Harness, library: Path
) -> None:
    write_fake_video(library / "tv" / "a.mkv")
    write_fake_video(library / "tv-old" / "b.mkv")
    await harness.scanner.scan(str(library))

    for child in (library / "tv").iterdir():
        child.unlink()
    (library / "tv").rmdir()
    result = await harness.scanner.scan(str(library / "tv"))

    assert result.removed == 1
    assert await harness.paths() == [str(library / "tv-old" / "b.mkv")]


async def test_unreadable_files_are_rows_with_errors(
    harness: Harness, library: Path
) -> None:
    (library / "notes.avi").write_text("just text")
    (library / "empty.mkv").write_bytes(b"")

    result = await harness.scanner.scan(str(library))

    assert result.new == 2
    assert result.error_count == 2
    assert sorted((e.path, e.kind) for e in result.errors) == [
        (str(library / "empty.mkv"), "empty"),
        (str(library / "notes.avi"), "unsupported"),
    ]
    video = await harness.repository.get_video(str(library / "notes.avi"))
    assert video is not None
    assert video.error == "unrecognised container"
    assert video.error_kind == "unsupported"
    assert video.duration_s is None
    assert video.video_codec is None
    assert video.width is None


async def test_ignored_and_non_video_files_are_skipped(
    harness: Harness, library: Path
) -> None:
    write_fake_video(library / "keep.mp4")
    write_fake_video(library / "download.mp4.part")
    write_fake_video(library / ".hidden.mp4")
    write_fake_video(library / ".cache" / "x.mp4")
    write_fake_video(library / "@eaDir" / "thumb.mp4")
    write_fake_video(library / "poster.jpg")

    result = await harness.scanner.scan(str(library))

    assert result.scanned == 1
    assert await harness.paths() == [str(library / "keep.mp4")]


async def test_path_outside_roots_is_rejected(
    harness: Harness, library: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "library-old"
    elsewhere.mkdir()

    with pytest.raises(PathNotAllowedError, match=f"cannot scan {elsewhere}: it is"):
        await harness.scanner.scan(str(elsewhere))


async def test_missing_root_marks_entries_offline(
    harness: Harness, library: Path
) -> None:
    path = write_fake_video(library / "a.mp4")
    await harness.scanner.scan(str(library))
    moved = library.with_name("unmounted")
    os.rename(library, moved)

    await harness.scanner.scan(str(library))
    offline = await harness.repository.get_video(str(path))
    os.rename(moved, library)
    await harness.scanner.scan(str(library))
    online = await harness.repository.get_video(str(path))

    assert offline is not None and offline.offline is True
    assert online is not None and online.offline is False
    assert online.id == offline.id


async def test_single_file_scan(harness: Harness, library: Path) -> None:
    path = write_fake_video(library / "a.mp4", duration_s=9.0)
    write_fake_video(library / "b.mp4")

    result = await harness.scanner.scan(str(path))

    assert result.new == 1
    assert await harness.paths() == [str(path)]


async def test_non_recursive_scan_leaves_subfolders_alone(
    harness: Harness, library: Path
) -> None:
    write_fake_video(library / "sub" / "deep.mp4")
    await harness.scanner.scan(str(library))
    (library / "sub" / "deep.mp4").unlink()
    write_fake_video(library / "top.mp4")

    result = await harness.scanner.scan(str(library), recursive=False)

    assert result.new == 1
    assert result.removed == 0
    assert await harness.paths() == [
        str(library / "sub" / "deep.mp4"),
        str(library / "top.mp4"),
    ]


async def test_probes_in_batches(
    make_config: MakeConfig, fake_core: FakeCore, library: Path
) -> None:
    harness = Harness(make_config(probe_batch_size=2), fake_core, clock=None)
    await harness.repository.open()
    for name in "abcde":
        write_fake_video(library / f"{name}.mp4")

    await harness.scanner.scan(str(library))

    assert [len(batch) for batch in fake_core.probed] == [2, 2, 1]


async def test_progress_reported_to_job(harness: Harness, library: Path) -> None:
    for name in "abc":
        write_fake_video(library / f"{name}.mp4")
    job = Job(
        id=1, kind="scan", path=str(library), status=JobState.RUNNING, created_at=0
    )
    context = JobContext(job, lambda: None)

    result = await harness.scanner(context)

    assert result["new"] == 3
    assert context.job.progress is not None
    assert (context.job.progress.done, context.job.progress.total) == (3, 3)


async def test_non_utf8_file_name(harness: Harness, library: Path) -> None:
    name = os.fsdecode(b"caf\xe9.mkv")
    write_fake_video(library / name)

    result = await harness.scanner.scan(str(library))

    assert result.new == 1
    assert [os.fsencode(p) for p in await harness.paths()] == [
        os.fsencode(str(library)) + b"/caf\xe9.mkv"
    ]


class TestSettling:
    async def test_recent_file_waits_for_settle(
        self, make_config: MakeConfig, fake_core: FakeCore, library: Path
    ) -> None:
        path = write_fake_video(library / "copying.mp4")
        now = path.stat().st_mtime + 1.0
        harness = Harness(make_config(settle_s=30.0), fake_core, clock=now)
        await harness.repository.open()

        result = await harness.scanner.scan(str(library))

        assert result.settling == 1
        assert result.new == 0
        assert fake_core.probed_paths == []
        assert harness.settle.paths == [str(path)]
        assert await harness.paths() == []

    async def test_file_changing_during_probe_is_not_recorded(
        self, harness: Harness, library: Path, fake_core: FakeCore
    ) -> None:
        path = write_fake_video(library / "growing.mp4")

        class GrowingCore(FakeCore):
            async def probe(
                self,
                paths: Sequence[str],
                *,
                roots: Sequence[str] | None = None,
                fingerprint: bool = False,
            ) -> list[ProbeResult]:
                results = await super().probe(paths, roots=roots)
                with path.open("ab") as stream:
                    stream.write(b" more bytes")
                return results

        harness.scanner = Scanner(
            repository=harness.repository,
            core=GrowingCore(),
            config=harness.scanner._config,
            settle=harness.settle,
        )

        result = await harness.scanner.scan(str(library))

        assert result.settling == 1
        assert result.new == 0
        assert harness.settle.paths == [str(path)]
        assert await harness.paths() == []

    async def test_incomplete_file_lifecycle(
        self, harness: Harness, library: Path, fake_core: FakeCore
    ) -> None:
        """1. first probe: pending, no error; 2. unchanged retry: error;
        3. unchanged again: not probed; 4. finished: probed, complete."""
        path = library / "download.mkv"
        path.write_bytes(b"PARTIAL" + b"\0" * 100)

        first = await harness.scanner.scan(str(library))
        pending = await harness.repository.get_video(str(path))
        retry = await harness.scanner.scan(str(path))
        cut_short = await harness.repository.get_video(str(path))
        fake_core.probed.clear()
        again = await harness.scanner.scan(str(library))
        write_fake_video(path, duration_s=44.0)
        finished = await harness.scanner.scan(str(library))
        done = await harness.repository.get_video(str(path))

        assert first.incomplete == 1
        assert first.error_count == 0
        assert harness.settle.paths == [str(path)]
        assert pending is not None
        assert pending.complete is False
        assert pending.error is None
        assert retry.error_count == 1
        assert cut_short is not None
        assert cut_short.error_kind == "incomplete"
        assert cut_short.error is not None
        assert "probed again when it changes" in cut_short.error
        assert again.skipped == 1
        assert fake_core.probed_paths == [str(path)]
        assert finished.updated == 1
        assert done is not None
        assert done.duration_s == 44.0
        assert done.error is None
        assert done.id == pending.id


async def test_unreadable_folder_keeps_its_entries(
    harness: Harness, library: Path
) -> None:
    write_fake_video(library / "locked" / "a.mkv")
    write_fake_video(library / "open" / "b.mkv")
    await harness.scanner.scan(str(library))
    locked = str(library / "locked")

    class LockedCore(FakeCore):
        async def walk(self, root: str, **options: object) -> WalkResult:
            walk = await super().walk(root, **options)  # type: ignore[arg-type]
            files = [f for f in walk.files if not f.path.startswith(locked)]
            error = WalkError(locked, "permission_denied", "permission denied")
            return WalkResult(files, [error], walk.dirs)

    harness.scanner = Scanner(
        repository=harness.repository,
        core=LockedCore(),
        config=harness.scanner._config,
        settle=harness.settle,
    )

    result = await harness.scanner.scan(str(library))

    assert result.removed == 0
    assert [(e.path, e.kind) for e in result.errors] == [(locked, "permission_denied")]
    assert len(await harness.paths()) == 2


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("/r/a.mp4", False),
        ("/r/.a.mp4", True),
        ("/r/x/.git/a.mp4", True),
        ("/r/a.mp4.part", True),
        ("/r/a.mp4~", True),
        ("/r/@eaDir/a.mp4", True),
        ("/r/.Trash-1000/a.mp4", True),
        ("/r/a.!qB", True),
        ("/r", False),
    ],
)
def test_is_ignored(path: str, ignored: bool) -> None:
    globs = (".*", "*.part", "*~", "@eaDir", ".Trash-*", "*.!qB")

    assert is_ignored(path, "/r", globs) is ignored


def test_has_video_extension_ignores_case() -> None:
    extensions = frozenset({"mkv", "mp4"})

    assert has_video_extension("/r/A.MKV", extensions)
    assert not has_video_extension("/r/mkv", extensions)
    assert not has_video_extension("/r/a.mkv.txt", extensions)


class TestSinglePathReports:
    async def test_symlink_loop_is_a_path_error(
        self, harness: Harness, library: Path
    ) -> None:
        os.symlink("loop2.mkv", library / "loop1.mkv")
        os.symlink("loop1.mkv", library / "loop2.mkv")

        result = await harness.scanner.scan(str(library / "loop1.mkv"))

        assert result.scanned == 0
        assert [(e.path, e.kind) for e in result.errors] == [
            (str(library / "loop1.mkv"), "io")
        ]
        assert "Too many levels of symbolic links" in result.errors[0].message

    async def test_name_too_long_is_a_path_error(
        self, harness: Harness, library: Path
    ) -> None:
        path = str(library / ("x" * 5000 + ".mkv"))

        result = await harness.scanner.scan(path)

        assert [e.kind for e in result.errors] == ["invalid_path"]
        assert "File name too long" in result.errors[0].message

    async def test_missing_path_has_note(self, harness: Harness, library: Path) -> None:
        result = await harness.scanner.scan(str(library / "gone.mkv"))

        assert result.scanned == 0
        assert result.notes == [f"not_found: {library / 'gone.mkv'} does not exist"]

    async def test_ignored_and_other_extensions_have_notes(
        self, harness: Harness, library: Path
    ) -> None:
        part = write_fake_video(library / "film.mkv.part")
        text = library / "readme.txt"
        text.write_text("not a video")

        part_result = await harness.scanner.scan(str(part))
        text_result = await harness.scanner.scan(str(text))

        assert part_result.notes == [
            f"ignored: {part} matches an ignore glob "
            f"({', '.join(harness.scanner._ignore)})"
        ]
        assert text_result.notes == [f"not a video extension: {text}"]
        assert await harness.paths() == []

    async def test_fifo_is_reported_like_a_folder_scan(
        self, harness: Harness, library: Path
    ) -> None:
        fifo = library / "x.mp4"
        os.mkfifo(fifo)

        result = await harness.scanner.scan(str(fifo))

        # The message the core's walk gives the same file in a folder scan.
        expected = [(str(fifo), "not_a_file", "not a regular file (a FIFO); skipped")]
        assert [(e.path, e.kind, e.message) for e in result.errors] == expected
        assert await harness.paths() == []


async def test_root_replaced_by_symlink_keeps_entries_offline(
    harness: Harness, library: Path, tmp_path: Path, fake_core: FakeCore
) -> None:
    path = write_fake_video(library / "a.mp4")
    await harness.scanner.scan(str(library))
    outside = tmp_path / "secret"
    write_fake_video(outside / "b.mp4")
    os.rename(library, tmp_path / "library.keep")
    os.symlink(outside, library)
    fake_core.probed.clear()

    result = await harness.scanner.scan(str(library))
    single = await harness.scanner.scan(str(library / "b.mp4"))
    video = await harness.repository.get_video(str(path))

    assert fake_core.probed_paths == []
    assert await harness.paths() == [str(path)]
    assert video is not None and video.offline is True
    assert result.removed == 0
    assert [e.kind for e in result.errors] == ["outside_roots"]
    assert "is now a symlink to" in result.errors[0].message
    assert [e.kind for e in single.errors] == ["outside_roots"]


async def test_files_settling_together_become_one_folder_scan(
    library: Path,
) -> None:
    leaf = library / "leaf"
    nested = library / "nested"
    (nested / "sub").mkdir(parents=True)
    submitted: list[str] = []
    # One folder scan, the ten files of the folder with a subfolder, one file.
    all_submitted = anyio.Event()
    settle = SettleTracker(_record_into(submitted, 12, all_submitted))
    leaf_files = [write_fake_video(leaf / f"clip {i:02d}.mp4") for i in range(10)]
    nested_files = [write_fake_video(nested / f"clip {i:02d}.mp4") for i in range(10)]
    lone = write_fake_video(library / "lone.mp4")
    for path in [*leaf_files, *nested_files, lone]:
        settle.defer(str(path), 0)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle.run)
        with anyio.fail_after(10):
            await all_submitted.wait()
        task_group.cancel_scope.cancel()

    assert sorted(submitted) == sorted(
        [str(leaf), str(lone), *(str(path) for path in nested_files)]
    )


def _record_into(
    submitted: list[str], count: int, done: anyio.Event
) -> Callable[[str], Awaitable[None]]:
    async def record(path: str) -> None:
        submitted.append(path)
        if len(submitted) >= count:
            done.set()

    return record


async def test_removed_sizes_by_device() -> None:
    """A removed entry's size matters for new files on another device only."""
    removed = RemovedEntries()
    gone = Video(
        id=7,
        path="/media/a.mp4",
        root="/media",
        size=100,
        mtime_ns=1,
        ctime_ns=2,
        inode=3,
        device=4,
    )
    removed.add([gone], {7: "digest"})

    assert removed.has_size(100, not_on_device=5)
    assert not removed.has_size(100, not_on_device=4)
    assert not removed.has_size(101, not_on_device=5)

    removed.claim(7)
    assert not removed.has_size(100, not_on_device=5)


async def test_concurrent_scans_one_take_over(
    harness: Harness, library: Path, fake_core: FakeCore
) -> None:
    """Two scans of one new file, running at the same time, while two deleted
    entries on another device have its content: one entry takes the path
    over, and the file stays cataloged under that entry's id."""
    new = write_fake_video(library / "film.mp4")
    [fingerprint] = await fake_core.fingerprint([str(new)])
    assert fingerprint.digest is not None
    gone = [str(library / "old drive" / name) for name in ("a.mp4", "b.mp4")]
    await harness.repository.upsert_videos(
        [
            Video(
                id=0,
                path=path,
                root=str(library),
                size=new.stat().st_size,
                mtime_ns=1,
                device=new.stat().st_dev + 1,
                inode=7 + index,
                duration_s=12.5,
                complete=True,
            )
            for index, path in enumerate(gone)
        ]
    )
    await harness.repository.set_fingerprints(
        [(path, fingerprint.digest) for path in gone]
    )
    stored = [await harness.repository.get_video(path) for path in gone]
    ids = {video.id for video in stored if video is not None}
    assert len(ids) == 2

    results: list[ScanResult] = []

    async def scan() -> None:
        results.append(await harness.scanner.scan(str(new)))

    async with anyio.create_task_group() as group:
        group.start_soon(scan)
        group.start_soon(scan)
    after = await harness.repository.get_video(str(new))

    assert sorted(result.moved for result in results) == [0, 1]
    assert after is not None
    assert after.id in ids
    assert str(new) in await harness.paths()
