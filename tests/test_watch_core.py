"""Tests of ``reelwatch._Watcher`` against real folders and real inotify."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "reelwatch._core", reason="the extension is not built; run 'maturin develop'"
)
# Imported after the skip check, which needs the module to be importable.
from reelwatch._core import WATCH_CHANGE_KINDS, Watcher

ChangeRow = tuple[str, bytes, bytes | None, str | None]

OVERFLOW_REASON = "event queue overflowed; changes were lost"


def fast_watcher(*roots: Path, **options: object) -> Watcher:
    """Return a watcher with short intervals, so tests see changes quickly."""
    settings: dict[str, object] = {
        "step_ms": 30,
        "debounce_ms": 300,
        "poll_interval_ms": 100,
        "root_check_interval_ms": 100,
    }
    settings.update(options)
    return Watcher([str(root) for root in roots], **settings)  # type: ignore[arg-type]


def collect_until(
    watcher: Watcher,
    done: Callable[[list[ChangeRow]], bool],
    timeout_s: float = 10.0,
) -> list[ChangeRow]:
    """Gather batches until ``done`` holds for all changes seen, or the timeout."""
    seen: list[ChangeRow] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done(seen):
        seen.extend(watcher.wait(200))
    return seen


def has(kind: str, path: Path) -> Callable[[list[ChangeRow]], bool]:
    wanted = os.fsencode(path)
    return lambda seen: any(row[0] == kind and row[1] == wanted for row in seen)


def kinds_of(seen: list[ChangeRow], path: Path) -> set[str]:
    wanted = os.fsencode(path)
    return {row[0] for row in seen if row[1] == wanted}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(root: Path) -> Iterator[Watcher]:
    with fast_watcher(root) as running:
        yield running


class TestChanges:
    def test_file_created_and_closed(self, root: Path, watcher: Watcher) -> None:
        film = root / "film.mkv"
        film.write_bytes(b"data")
        seen = collect_until(watcher, has("closed_write", film))
        assert "created" in kinds_of(seen, film)
        assert "closed_write" in kinds_of(seen, film)

    def test_file_modified(self, root: Path, watcher: Watcher) -> None:
        film = root / "film.mkv"
        film.write_bytes(b"data")
        collect_until(watcher, has("closed_write", film))
        with film.open("ab") as stream:
            stream.write(b"more")
        seen = collect_until(watcher, has("modified", film))
        assert "modified" in kinds_of(seen, film)

    def test_file_removed(self, root: Path, watcher: Watcher) -> None:
        film = root / "film.mkv"
        film.write_bytes(b"data")
        collect_until(watcher, has("closed_write", film))
        film.unlink()
        seen = collect_until(watcher, has("removed", film))
        assert kinds_of(seen, film) == {"removed"}

    def test_file_renamed(self, root: Path, watcher: Watcher) -> None:
        part = root / "film.mkv.part"
        part.write_bytes(b"data")
        collect_until(watcher, has("closed_write", part))
        final = root / "film.mkv"
        part.rename(final)
        seen = collect_until(watcher, has("renamed", part))
        renames = [row for row in seen if row[0] == "renamed"]
        assert renames == [("renamed", os.fsencode(part), os.fsencode(final), None)]

    def test_folder_renamed_is_renamed_and_rescanned(
        self, root: Path, watcher: Watcher
    ) -> None:
        season = root / "season"
        season.mkdir()
        (season / "e1.mkv").write_bytes(b"x")
        collect_until(watcher, has("rescan", season))
        moved = root / "season-1"
        season.rename(moved)
        seen = collect_until(watcher, has("rescan", moved))
        renames = [row for row in seen if row[0] == "renamed"]
        assert renames == [("renamed", os.fsencode(season), os.fsencode(moved), None)]
        assert "rescan" in kinds_of(seen, moved)
        assert kinds_of(seen, season) == {"renamed"}

    def test_folder_removed(self, root: Path, watcher: Watcher) -> None:
        season = root / "season"
        season.mkdir()
        collect_until(watcher, has("created", season))
        season.rmdir()
        seen = collect_until(watcher, has("removed", season))
        assert "removed" in kinds_of(seen, season)

    def test_folder_moved_in_is_rescanned(
        self, tmp_path: Path, root: Path, watcher: Watcher
    ) -> None:
        outside = tmp_path / "download"
        outside.mkdir()
        (outside / "film.mkv").write_bytes(b"x")
        inside = root / "download"
        outside.rename(inside)
        seen = collect_until(watcher, has("rescan", inside))
        assert "created" in kinds_of(seen, inside)
        assert "rescan" in kinds_of(seen, inside)

    def test_file_moved_out_is_removed(
        self, tmp_path: Path, root: Path, watcher: Watcher
    ) -> None:
        film = root / "film.mkv"
        film.write_bytes(b"x")
        collect_until(watcher, has("closed_write", film))
        film.rename(tmp_path / "film.mkv")
        seen = collect_until(watcher, has("removed", film))
        assert kinds_of(seen, film) == {"removed"}

    def test_folder_filled_at_once_is_discoverable(
        self, root: Path, watcher: Watcher
    ) -> None:
        """A folder created and filled at once: every file is reported or rescanned."""
        season = root / "season"
        (season / "extras").mkdir(parents=True)
        expected = set()
        for index in range(300):
            name = season / ("extras" if index % 2 else "") / f"e{index}.mkv"
            name.write_bytes(b"x")
            expected.add(os.fsencode(name))
        seen = collect_until(watcher, has("rescan", season))
        reported = {row[1] for row in seen if row[0] in ("created", "closed_write")}
        for row in seen:
            if row[0] == "rescan":
                for folder, _dirs, files in os.walk(row[1]):
                    reported.update(os.path.join(folder, name) for name in files)
        assert expected - reported == set()

    def test_ignored_names_are_left_out(self, root: Path) -> None:
        with fast_watcher(root, ignore=["*.part", "@eaDir"]) as watching:
            (root / "@eaDir").mkdir()
            (root / "@eaDir" / "thumb.jpg").write_bytes(b"x")
            (root / "film.mkv.part").write_bytes(b"x")
            film = root / "film.mkv"
            film.write_bytes(b"x")
            seen = collect_until(watching, has("closed_write", film))
        paths = {row[1] for row in seen}
        assert paths == {os.fsencode(film)}

    def test_symlink_below_root_is_not_followed(
        self, tmp_path: Path, root: Path
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (root / "link").symlink_to(outside, target_is_directory=True)
        with fast_watcher(root) as watching:
            (outside / "film.mkv").write_bytes(b"x")
            marker = root / "marker.mkv"
            marker.write_bytes(b"x")
            seen = collect_until(watching, has("closed_write", marker))
        assert all(b"/link/" not in row[1] for row in seen)


class TestLoss:
    def test_injected_overflow_gives_rescan_of_root(
        self, root: Path, watcher: Watcher
    ) -> None:
        watcher._debug_inject("overflow")
        seen = collect_until(watcher, has("rescan", root))
        assert ("rescan", os.fsencode(root), None, OVERFLOW_REASON) in seen

    def test_real_overflow_gives_rescan_of_root(
        self, root: Path, watcher: Watcher
    ) -> None:
        """The kernel queue overflows while delivery is paused; the root is rescanned.

        1. Stop taking events from inotify.
        2. Create as many files as the kernel queue holds; each queues two events.
        3. Resume: the overflow arrives as a rescan of the root.
        """
        limit_file = Path("/proc/sys/fs/inotify/max_queued_events")
        if not limit_file.exists():
            pytest.skip("no /proc/sys/fs/inotify/max_queued_events to size the burst")
        limit = int(limit_file.read_text())
        watcher._debug_inject("pause")
        for index in range(limit):
            (root / f"f{index}").touch()
        watcher._debug_inject("resume")
        seen = collect_until(watcher, has("rescan", root), timeout_s=30)
        assert ("rescan", os.fsencode(root), None, OVERFLOW_REASON) in seen

    def test_watch_limit_switches_root_to_polling(
        self, root: Path, watcher: Watcher
    ) -> None:
        watcher._debug_inject("watch_limit", root=0)
        seen = collect_until(watcher, has("rescan", root))
        errors = [row for row in seen if row[0] == "watch_error"]
        assert len(errors) == 1
        assert "max_user_watches" in (errors[0][3] or "")
        path, state, message = watcher.roots()[0]
        assert state == "polling"
        assert "max_user_watches" in (message or "")
        film = root / "after.mkv"
        film.write_bytes(b"x")
        seen = collect_until(watcher, has("created", film))
        assert "created" in kinds_of(seen, film)

    def test_forced_polling_sees_changes(self, root: Path) -> None:
        with fast_watcher(root, force_polling=True) as watching:
            assert watching.roots() == [
                (os.fsencode(root), "polling", "polling forced by configuration")
            ]
            film = root / "film.mkv"
            film.write_bytes(b"x")
            seen = collect_until(watching, has("created", film))
            assert "created" in kinds_of(seen, film)
            film.unlink()
            seen = collect_until(watching, has("removed", film))
            assert "removed" in kinds_of(seen, film)

    def test_polling_sees_replacement_with_older_mtime(self, root: Path) -> None:
        film = root / "film.mkv"
        film.write_bytes(b"old")
        with fast_watcher(root, force_polling=True) as watching:
            replacement = root / "replacement.tmp"
            replacement.write_bytes(b"new")
            os.utime(replacement, (1_000_000, 1_000_000))
            time.sleep(0.3)
            watching.wait(0)
            replacement.replace(film)
            seen = collect_until(watching, has("created", film))
        assert "created" in kinds_of(seen, film)


class TestRoots:
    def test_deleted_root_is_missing_then_back(
        self, root: Path, watcher: Watcher
    ) -> None:
        shutil.rmtree(root)
        seen = collect_until(watcher, has("root_missing", root))
        assert "root_missing" in kinds_of(seen, root)
        assert watcher.roots()[0][1] == "missing"
        root.mkdir()
        seen = collect_until(watcher, has("rescan", root))
        assert "rescan" in kinds_of(seen, root)
        assert watcher.roots()[0][1] == "watching"

    def test_missing_root_at_start_is_reported(self, tmp_path: Path) -> None:
        absent = tmp_path / "absent"
        with fast_watcher(absent) as watching:
            assert watching.roots() == [
                (os.fsencode(absent), "missing", "the root does not exist")
            ]
            seen = collect_until(watching, has("root_missing", absent))
        assert "root_missing" in kinds_of(seen, absent)

    def test_unmounted_root_is_reported(self, root: Path) -> None:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "reelwatch-test", str(root)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip("mounting a tmpfs needs root privileges")
        try:
            with fast_watcher(root) as watching:
                subprocess.run(["umount", str(root)], check=True)
                seen = collect_until(watching, has("unmounted", root))
                assert "unmounted" in kinds_of(seen, root)
                assert watching.roots()[0][1] == "missing"
        finally:
            subprocess.run(["umount", str(root)], capture_output=True, check=False)


class TestArguments:
    def test_relative_root_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="not an absolute path"):
            Watcher(["media"])

    def test_overlapping_roots_are_rejected(self, root: Path) -> None:
        with pytest.raises(ValueError, match="overlap"):
            Watcher([str(root), str(root / "films")])

    def test_invalid_ignore_pattern_is_rejected(self, root: Path) -> None:
        with pytest.raises(ValueError, match=r"invalid ignore pattern '\[abc'"):
            Watcher([str(root)], ignore=["[abc"])

    def test_single_str_root_is_rejected(self, root: Path) -> None:
        with pytest.raises(TypeError, match="wrap it in a list"):
            Watcher(str(root))

    def test_wait_after_close_raises(self, root: Path) -> None:
        watching = Watcher([root])
        watching.close()
        with pytest.raises(RuntimeError, match="closed"):
            watching.wait(10)

    def test_bytes_root_round_trips(self, tmp_path: Path) -> None:
        odd = os.fsencode(tmp_path) + b"/caf\xe9"
        os.mkdir(odd)
        with Watcher([odd]) as watching:
            assert watching.roots()[0][0] == odd

    def test_change_kinds_constant(self) -> None:
        assert WATCH_CHANGE_KINDS == (
            "created",
            "modified",
            "closed_write",
            "removed",
            "renamed",
            "rescan",
            "watch_error",
            "root_missing",
            "unmounted",
        )
