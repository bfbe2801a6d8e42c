"""End to end: the real daemon process follows real filesystem changes.

Every test starts ``reelwatch serve`` on a temporary root, changes files with
ordinary system calls, and reads the catalog and ``status`` over the control
socket. No test asserts how long anything takes: each waits, with a generous
timeout, for the state a user would check.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess, running_daemon, wait_until

pytestmark = pytest.mark.timeout(240)

# Six times the 0.25 s pause between the chunks of the slow copy below. A
# longer stall of the writer makes an incomplete entry, which the test allows.
SETTLE_S = 1.5


@pytest.fixture
def media() -> Path:
    found = corpus_media_dir()
    if found is None:
        pytest.skip(SKIP_REASON)
    return found


@pytest.fixture
def clip(media: Path) -> Path:
    """A complete MP4 of about 1 MB (H.264 and AAC, 5.055 s)."""
    return media / "flower.mp4"


@pytest.fixture
def tiny_clip(media: Path) -> Path:
    """A complete MP4 of 1.5 KB, for tests that need thousands of files."""
    return media / "video_rotation_90.mp4"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    library = tmp_path / "library"
    library.mkdir()
    return library.resolve()


def by_path(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {video["path"]: video for video in daemon.videos()}


def catalog_paths(daemon: DaemonProcess) -> list[str]:
    return sorted(video["path"] for video in daemon.videos())


def wait_for_paths(
    daemon: DaemonProcess, expected: list[str], *, timeout_s: float = 60, what: str
) -> None:
    wait_until(
        lambda: catalog_paths(daemon) == sorted(expected),
        timeout_s=timeout_s,
        what=what,
        step_s=0.2,
    )


def root_state(daemon: DaemonProcess, root: Path) -> str:
    for status in daemon.call("status")["roots"]:
        if status["path"] == str(root):
            return str(status["state"])
    raise AssertionError(f"{root} is not in status.roots")


def copy_clips(source: Path, folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    paths = []
    for index in range(count):
        path = folder / f"clip {index:05d}.mp4"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------------------
# Settling


def test_slow_copy_appears_once_complete(
    tmp_path: Path, root: Path, clip: Path
) -> None:
    """1. copy a clip in chunks over a few seconds; 2. while it grows, the
    catalog never has an error for it; 3. it ends as one complete entry.
    """
    data = clip.read_bytes()
    target = root / "slow copy.mp4"
    seen: list[dict[str, Any]] = []
    config = f"[scan]\nsettle_s = {SETTLE_S}\n"

    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        daemon.wait_idle()
        chunk = len(data) // 12 + 1
        with target.open("wb") as stream:
            for start in range(0, len(data), chunk):
                stream.write(data[start : start + chunk])
                stream.flush()
                seen.extend(daemon.videos())
                time.sleep(0.25)

        def complete() -> bool:
            videos = daemon.videos()
            seen.extend(videos)
            return len(videos) == 1 and videos[0]["complete"] is True

        wait_until(complete, timeout_s=60, what="the copied file, complete")
        (video,) = daemon.videos()

    assert video["path"] == str(target)
    assert video["error"] is None
    assert video["size"] == len(data)
    assert video["video_codec"] == "h264"
    assert video["duration_s"] == pytest.approx(5.055, abs=0.01)
    assert [v for v in seen if v["error_kind"] not in (None, "incomplete")] == []
    assert {v["id"] for v in seen} == {video["id"]}


def test_download_renamed_from_part_is_indexed(
    tmp_path: Path, root: Path, clip: Path
) -> None:
    """A ``.part`` file is never cataloged; renamed to its final name, it is."""
    partial = root / "movie.mp4.part"
    final = root / "movie.mp4"
    with running_daemon(
        tmp_path / "run", [root], extra_config="[scan]\nsettle_s = 30\n"
    ) as daemon:
        daemon.wait_idle()
        shutil.copyfile(clip, partial)
        # The copy's mtime is now older than nothing; backdate it as a
        # download client's file would be after minutes of writing.
        old = time.time() - 3600
        os.utime(partial, (old, old))
        daemon.wait_idle()
        assert daemon.videos() == []

        os.rename(partial, final)
        # settle_s is 30 s: an entry before that shows the rename was not
        # made to wait for a settle period.
        wait_for_paths(daemon, [str(final)], timeout_s=20, what="the renamed file")
        (video,) = daemon.videos()

    assert video["complete"] is True
    assert video["error"] is None


def test_cut_short_and_preallocated_files_are_incomplete(
    tmp_path: Path, root: Path, clip: Path
) -> None:
    """A truncated MP4 and an all-zero preallocated file are ``incomplete``,
    never an error of another kind. Once the real content is written, each
    entry is complete and keeps its id.
    """
    data = clip.read_bytes()
    truncated = root / "truncated.mp4"
    preallocated = root / "preallocated.mp4"
    config = "[scan]\nsettle_s = 0.5\n"
    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        daemon.wait_idle()
        truncated.write_bytes(data[: len(data) // 3])
        with preallocated.open("wb") as stream:
            stream.truncate(len(data))

        def both_marked_incomplete() -> bool:
            videos = by_path(daemon)
            return all(
                str(path) in videos and videos[str(path)]["error_kind"] == "incomplete"
                for path in (truncated, preallocated)
            )

        wait_until(both_marked_incomplete, timeout_s=60, what="incomplete entries")
        before = by_path(daemon)
        for path in (truncated, preallocated):
            video = before[str(path)]
            assert video["complete"] is False, path.name
            assert video["duration_s"] is None or path == truncated, path.name

        preallocated.write_bytes(data)
        truncated.write_bytes(data)

        def both_complete() -> bool:
            videos = by_path(daemon)
            return all(
                videos.get(str(path), {}).get("complete") is True
                for path in (truncated, preallocated)
            )

        wait_until(both_complete, timeout_s=60, what="complete entries")
        after = by_path(daemon)

    for path in (truncated, preallocated):
        assert after[str(path)]["error"] is None, path.name
        assert after[str(path)]["id"] == before[str(path)]["id"], path.name


# ---------------------------------------------------------------------------
# Moves, renames, hard links


def test_renames_keep_ids(tmp_path: Path, root: Path, tiny_clip: Path) -> None:
    """A file rename, a case-only rename and a folder of 500 files renamed:
    every entry keeps its id, and nothing is probed again for the folder.
    """
    folder = root / "Season 1"
    paths = copy_clips(tiny_clip, folder, 500)
    single = root / "Movie.mp4"
    shutil.copyfile(tiny_clip, single)

    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle(timeout_s=120)
        ids = {v["path"]: v["id"] for v in daemon.videos()}
        assert len(ids) == 501

        renamed_folder = root / "Season 01"
        os.rename(folder, renamed_folder)
        os.rename(single, root / "movie.mp4")
        moved = [p.replace(str(folder), str(renamed_folder)) for p in paths]
        expected = [*moved, str(root / "movie.mp4")]
        wait_for_paths(daemon, expected, timeout_s=120, what="the renamed paths")
        status = daemon.wait_idle()
        after = {v["path"]: v["id"] for v in daemon.videos()}

    for old, new in zip(paths, moved, strict=True):
        assert after[new] == ids[old], new
    assert after[str(root / "movie.mp4")] == ids[str(single)]
    assert len(set(after.values())) == 501
    # The folder's files kept their ctime, so none was probed again.
    assert status["probes"] <= 501 + 1


def test_moves_across_and_out_of_roots(tmp_path: Path, tiny_clip: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    outside = tmp_path / "outside"
    for folder in (first, second, outside):
        folder.mkdir()
    shutil.copyfile(tiny_clip, first / "a.mp4")
    shutil.copyfile(tiny_clip, first / "b.mp4")

    with running_daemon(tmp_path / "run", [first, second]) as daemon:
        daemon.wait_idle()
        ids = {v["path"]: v["id"] for v in daemon.videos()}

        os.rename(first / "a.mp4", second / "a.mp4")
        os.rename(first / "b.mp4", outside / "b.mp4")
        wait_for_paths(
            daemon, [str(second / "a.mp4")], what="a moved across roots, b gone"
        )
        (video,) = daemon.videos()

    assert video["id"] == ids[str(first / "a.mp4")]
    assert video["root"] == str(second)


@pytest.fixture
def other_device_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than ``tmp_path``: a tmpfs in /dev/shm."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is missing or on the same filesystem as the tests")
    folder = Path(tempfile.mkdtemp(prefix="reelwatch-test-", dir=shm))
    try:
        yield folder.resolve()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_move_across_filesystems_keeps_id(
    tmp_path: Path, root: Path, other_device_dir: Path, clip: Path
) -> None:
    """A move between roots on two filesystems is a copy and a delete; the
    entry is recognised by its content fingerprint and keeps its id."""
    source = root / "film.mp4"
    shutil.copyfile(clip, source)
    with running_daemon(tmp_path / "run", [root, other_device_dir]) as daemon:
        daemon.wait_idle()
        (before,) = daemon.videos()

        shutil.move(source, other_device_dir / "film.mp4")
        target = str(other_device_dir / "film.mp4")
        wait_for_paths(daemon, [target], what="the moved file")
        daemon.wait_idle()
        (after,) = daemon.videos()

    assert after["id"] == before["id"]
    assert after["root"] == str(other_device_dir)
    assert after["device"] != before["device"]
    assert after["duration_s"] == before["duration_s"]


def test_hard_links_are_separate_entries(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    """Each hard link is its own entry; a new link never takes over another's id."""
    original = root / "downloads" / "show.mp4"
    original.parent.mkdir()
    shutil.copyfile(tiny_clip, original)
    library_link = root / "library" / "show.mp4"
    library_link.parent.mkdir()
    os.link(original, library_link)

    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        first = by_path(daemon)
        assert sorted(first) == sorted([str(original), str(library_link)])
        assert first[str(original)]["id"] != first[str(library_link)]["id"]

        third = root / "library" / "show again.mp4"
        os.link(original, third)
        wait_for_paths(
            daemon,
            [str(original), str(library_link), str(third)],
            what="the third link",
        )
        second = by_path(daemon)
        assert second[str(third)]["id"] not in {v["id"] for v in first.values()}

        original.unlink()
        wait_for_paths(
            daemon, [str(library_link), str(third)], what="the removed link gone"
        )
        third_state = by_path(daemon)

    assert third_state[str(library_link)]["id"] == first[str(library_link)]["id"]
    assert third_state[str(third)]["id"] == second[str(third)]["id"]


# ---------------------------------------------------------------------------
# Deletes and missing roots


def test_deleted_tree_leaves_catalog(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    kept = copy_clips(tiny_clip, root / "kept", 3)
    copy_clips(tiny_clip, root / "doomed" / "deep" / "deeper", 20)
    copy_clips(tiny_clip, root / "doomed", 5)
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        assert len(daemon.videos()) == 28
        shutil.rmtree(root / "doomed")
        wait_for_paths(daemon, kept, what="the deleted tree gone")


def test_root_removed_and_restored(tmp_path: Path, root: Path, tiny_clip: Path) -> None:
    """1. catalog a root; 2. move the root away: it is ``missing`` and its
    entries stay, marked offline; 3. move it back: ``watching``, entries
    online with the same ids.
    """
    paths = copy_clips(tiny_clip, root / "films", 4)
    aside = tmp_path / "unplugged"
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        ids = {v["path"]: v["id"] for v in daemon.videos()}

        os.rename(root, aside)
        wait_until(
            lambda: root_state(daemon, root) == "missing",
            timeout_s=60,
            what="the root reported missing",
        )
        wait_until(
            lambda: all(v["offline"] for v in daemon.videos()),
            timeout_s=60,
            what="entries marked offline",
        )
        offline = by_path(daemon)
        assert sorted(offline) == paths

        os.rename(aside, root)
        wait_until(
            lambda: root_state(daemon, root) == "watching",
            timeout_s=60,
            what="the root watched again",
        )
        wait_until(
            lambda: not any(v["offline"] for v in daemon.videos()),
            timeout_s=60,
            what="entries back online",
        )
        back = {v["path"]: v["id"] for v in daemon.videos()}

    assert back == ids


# ---------------------------------------------------------------------------
# New folders, lost events, polling, reconciliation


def test_new_folders_filled_quickly_are_not_missed(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        expected = []
        for show in range(20):
            for season in range(3):
                folder = root / f"show {show}" / f"season {season}" / "extras"
                expected += copy_clips(tiny_clip, folder, 3)
        wait_for_paths(daemon, expected, timeout_s=120, what="every new file")


def inject_watch_fault(daemon: DaemonProcess, fault: str) -> None:
    """Make the daemon inject ``fault`` into its core watcher (a test-only hook)."""
    assert daemon.process is not None
    Path(daemon.env["REELWATCH_DEBUG_WATCH_FAULTS"]).write_text(fault)
    daemon.process.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: f'"fault":"{fault}"' in daemon.log_path.read_text(),
        timeout_s=30,
        what=f"the injected {fault}",
    )


def max_queued_events() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        pytest.skip("inotify's max_queued_events is not readable here")


def test_kernel_queue_overflow_is_rescanned(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    """1. stop the watcher from reading inotify; 2. create more files than the
    kernel queue has room for, so events are lost; 3. read again: the
    overflow becomes a rescan and every file is cataloged.
    """
    limit = max_queued_events()
    if limit > 40_000:
        pytest.skip(f"max_queued_events is {limit}; overflowing it takes too long")
    # Each copied file queues at least two events (create, close after write).
    count = limit // 2 + 500
    folder = root / "burst"
    folder.mkdir()
    env = {"REELWATCH_DEBUG_WATCH_FAULTS": str(tmp_path / "fault")}
    with running_daemon(tmp_path / "run", [root], env=env) as daemon:
        daemon.wait_idle()
        inject_watch_fault(daemon, "pause")
        expected = copy_clips(tiny_clip, folder, count)
        inject_watch_fault(daemon, "resume")
        wait_until(
            lambda: daemon.call("status")["videos"] == count,
            timeout_s=180,
            what=f"{count} entries",
            step_s=0.5,
        )
        daemon.wait_idle()
        assert catalog_paths(daemon) == expected
        log = daemon.log_path.read_text()

    assert '"event":"watch_rescan"' in log
    assert "overflow" in log


def test_watch_limit_falls_back_to_polling(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    """An injected watch-limit error turns the root to polling, which still
    finds new files."""
    env = {"REELWATCH_DEBUG_WATCH_FAULTS": str(tmp_path / "fault")}
    config = "[scan]\npoll_interval_s = 0.5\n"
    with running_daemon(
        tmp_path / "run", [root], env=env, extra_config=config
    ) as daemon:
        daemon.wait_idle()
        assert root_state(daemon, root) == "watching"
        inject_watch_fault(daemon, "watch_limit")
        wait_until(
            lambda: root_state(daemon, root) == "polling",
            timeout_s=30,
            what="the root reported polling",
        )
        status = daemon.call("status")
        added = copy_clips(tiny_clip, root / "later", 2)
        wait_for_paths(daemon, added, what="files seen by polling")

    (root_status,) = status["roots"]
    assert "max_user_watches" in (root_status["error"] or "")


def test_forced_polling_is_reported_and_sees_changes(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    config = "[scan]\nforce_polling = true\npoll_interval_s = 0.5\n"
    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        daemon.wait_idle()
        assert root_state(daemon, root) == "polling"
        added = copy_clips(tiny_clip, root / "new", 2)
        wait_for_paths(daemon, added, what="files seen by polling")


def test_reconciliation_repairs_change_without_event(
    tmp_path: Path, root: Path, clip: Path, tiny_clip: Path
) -> None:
    """A write through a hard link outside the root sends no event inside it;
    the periodic reconciliation still updates the entry.
    """
    outside = tmp_path / "downloads"
    outside.mkdir()
    source = outside / "clip.mp4"
    shutil.copyfile(tiny_clip, source)
    os.link(source, root / "clip.mp4")
    config = "[scan]\nreconcile_interval_s = 1.0\nsettle_s = 0.2\n"
    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        daemon.wait_idle()
        (before,) = daemon.videos()
        assert before["width"] == 100

        # Rewrite the shared inode in place through the outside path.
        source.write_bytes(clip.read_bytes())
        wait_until(
            lambda: daemon.videos()[0]["width"] == 960,
            timeout_s=60,
            what="the reconciled entry",
        )
        (after,) = daemon.videos()

    assert after["id"] == before["id"]
    assert after["size"] == clip.stat().st_size


# ---------------------------------------------------------------------------
# Incremental work and ignore rules


def test_restart_on_unchanged_library_probes_nothing(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    copy_clips(tiny_clip, root / "a", 30)
    daemon = DaemonProcess(tmp_path / "run", [root])
    daemon.start()
    try:
        first = daemon.wait_idle()
    finally:
        assert daemon.stop() == 0
    assert first["probes"] == 30

    daemon.start()
    try:
        second = daemon.wait_idle()
        assert second["probes"] == 0
        assert second["videos"] == 30

        # Same size and mtime, new ctime: the file is probed again.
        touched = root / "a" / "clip 00000.mp4"
        stat = touched.stat()
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        daemon.call("scan", {"path": str(root)})
        wait_until(
            lambda: daemon.call("status")["probes"] == 1,
            timeout_s=60,
            what="one probe of the touched file",
        )
        third = daemon.wait_idle()
    finally:
        daemon.stop()
    assert third["probes"] == 1


def test_ignore_rules_and_symlinks(tmp_path: Path, root: Path, tiny_clip: Path) -> None:
    outside = tmp_path / "outside"
    copy_clips(tiny_clip, outside, 1)
    wanted = copy_clips(tiny_clip, root / "shows", 1)
    for name in (
        ".hidden.mp4",
        ".hidden folder/x.mp4",
        "x.mp4.part",
        "x.mp4.crdownload",
        "x.mp4.tmp",
        "x.mp4.!qB",
        "x.mp4~",
        "@eaDir/x.mp4",
        ".Trash-1000/x.mp4",
        "samples/x-sample.mp4",
        "x.mkv",
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_clip, path)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "alias").symlink_to(root / "shows", target_is_directory=True)
    (root / "shows" / "loop").symlink_to(root, target_is_directory=True)
    config = '[scan]\nignore = ["*-sample.*"]\nvideo_extensions = ["mp4"]\n'

    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        daemon.wait_idle(timeout_s=60)
        paths = catalog_paths(daemon)
        # Files created while running go through the watcher's filters too.
        shutil.copyfile(tiny_clip, root / ".later.mp4")
        shutil.copyfile(tiny_clip, root / "later.mp4.part")
        shutil.copyfile(tiny_clip, root / "later.mp4")
        wait_for_paths(
            daemon,
            sorted({*paths, str(root / "later.mp4")}),
            what="the new visible file only",
        )

    assert all(str(outside) not in path for path in paths)
    assert set(wanted) <= set(paths)
    # A link to a folder inside the root is followed; the loop is not.
    assert set(paths) <= {*wanted, str(root / "alias" / "clip 00000.mp4")}


# ---------------------------------------------------------------------------
# Restarts


def make_library(tiny_clip: Path, root: Path, count: int) -> list[str]:
    paths = []
    per_folder = 250
    for start in range(0, count, per_folder):
        folder = root / f"folder {start // per_folder:03d}"
        paths += copy_clips(tiny_clip, folder, min(per_folder, count - start))
    return paths


def running_scan_seen(daemon: DaemonProcess) -> bool:
    for job in daemon.call("jobs.list", {"status": "running", "limit": 10})["jobs"]:
        if job["progress"] and job["progress"]["done"] > 0:
            return True
    return False


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"]
)
def test_stop_during_scan_then_restart_converges(
    tmp_path: Path, root: Path, tiny_clip: Path, stop_signal: signal.Signals
) -> None:
    """1. start on 5,000 files; 2. stop the daemon (kill -9 or SIGTERM) while
    a scan runs; 3. restart; 4. the catalog equals the disk, no path twice,
    no job left running, and each file was probed about once.
    """
    expected = make_library(tiny_clip, root, 5000)
    config = "[scan]\nprobe_batch_size = 16\n"
    daemon = DaemonProcess(tmp_path / "run", [root], extra_config=config)
    daemon.start()
    try:
        wait_until(
            lambda: running_scan_seen(daemon),
            timeout_s=60,
            what="a scan in progress",
            step_s=0.01,
        )
        stored_before = daemon.call("status")["videos"]
    finally:
        code = daemon.stop(stop_signal)
    if stop_signal == signal.SIGTERM:
        assert code == 0, daemon.log_tail()
    else:
        assert code == -signal.SIGKILL

    daemon.start()
    try:
        status = daemon.wait_idle(timeout_s=180)
        videos = daemon.videos()
        running = daemon.call("jobs.list", {"status": "running", "limit": 10})
        pending = daemon.call("jobs.list", {"status": "pending", "limit": 10})
    finally:
        daemon.stop()

    paths = [video["path"] for video in videos]
    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(expected)
    assert status["videos"] == 5000
    assert running["jobs"] == []
    assert pending["jobs"] == []
    # Files committed before the stop were not probed again.
    assert status["probes"] <= 5000 - stored_before + 16 * 4


def test_cancel_running_scan(tmp_path: Path, root: Path, tiny_clip: Path) -> None:
    """A running scan cancelled over the socket stops at its next batch and
    ends ``cancelled``; what it stored so far stays."""
    make_library(tiny_clip, root, 2000)
    config = "[scan]\nprobe_batch_size = 8\nworkers = 1\n"
    with running_daemon(tmp_path / "run", [root], extra_config=config) as daemon:
        wait_until(
            lambda: running_scan_seen(daemon),
            timeout_s=60,
            what="a scan in progress",
            step_s=0.01,
        )
        jobs = daemon.call("jobs.list", {"status": "running", "limit": 10})["jobs"]
        job_id = jobs[0]["id"]
        daemon.call("job.cancel", {"job_id": job_id})
        wait_until(
            lambda: daemon.call("job.get", {"job_id": job_id})["status"] == "cancelled",
            timeout_s=60,
            what="the cancelled job",
        )
        cancelled = daemon.call("job.get", {"job_id": job_id})
        status = daemon.wait_idle()

    assert cancelled["progress"]["done"] < cancelled["progress"]["total"]
    assert 0 < status["videos"] < 2000


# ---------------------------------------------------------------------------
# Burst


@pytest.mark.timeout(480)
def test_burst_of_10000_files(tmp_path: Path, root: Path, tiny_clip: Path) -> None:
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        expected = make_library(tiny_clip, root, 10_000)
        wait_until(
            lambda: daemon.call("status")["videos"] == 10_000,
            timeout_s=360,
            what="10,000 entries",
            step_s=0.5,
        )
        daemon.wait_idle(timeout_s=120)
        paths = [video["path"] for video in daemon.videos()]

    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(expected)


# ---------------------------------------------------------------------------
# Reload


def reload(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)


def test_reload_adds_and_removes_roots(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    """1. run on one root; 2. add a second root and reload: it is watched and
    scanned; 3. remove the first and reload: it is gone from status and its
    entries leave the catalog; changes there are no longer followed.
    """
    second = tmp_path / "second"
    first_files = copy_clips(tiny_clip, root, 2)
    second_files = copy_clips(tiny_clip, second, 3)
    daemon = DaemonProcess(tmp_path / "run", [root])
    daemon.start()
    try:
        daemon.wait_idle()
        assert catalog_paths(daemon) == first_files

        daemon.roots = [root, second]
        daemon.write_config()
        reload(daemon)
        wait_for_paths(daemon, first_files + second_files, what="the added root")
        added_file = copy_clips(tiny_clip, second / "new", 1)
        wait_for_paths(
            daemon, first_files + second_files + added_file, what="a watched change"
        )
        assert root_state(daemon, second) == "watching"

        daemon.roots = [second]
        daemon.write_config()
        reload(daemon)
        wait_for_paths(daemon, second_files + added_file, what="the removed root")
        roots = [r["path"] for r in daemon.call("status")["roots"]]
        assert roots == [str(second)]

        shutil.copyfile(tiny_clip, root / "after removal.mp4")
        with pytest.raises(Exception, match="not inside an allowed scan root"):
            daemon.call("scan", {"path": str(root)})
        daemon.wait_idle()
        assert catalog_paths(daemon) == sorted(second_files + added_file)
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.1)
        yield sock


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def test_reload_with_invalid_file_keeps_running_config(
    tmp_path: Path, root: Path, tiny_clip: Path, notify_socket: socket.socket
) -> None:
    """1. reload with a broken file: status shows config_error, roots stay,
    and systemd gets RELOADING=1 then READY=1; 2. fix the file and reload:
    config_error is cleared.
    """
    files = copy_clips(tiny_clip, root, 2)
    daemon = DaemonProcess(
        tmp_path / "run",
        [root],
        env={"NOTIFY_SOCKET": notify_socket.getsockname()},
    )
    daemon.start()
    try:
        daemon.wait_idle()
        wait_until(
            lambda: any(
                m.startswith("STATUS=2 videos") for m in received(notify_socket)
            ),
            timeout_s=30,
            what="a STATUS= summary",
        )
        daemon.config_path.write_text(
            daemon.config_path.read_text() + "[scan]\nworkers = 0\n"
        )
        reload(daemon)
        wait_until(
            lambda: daemon.call("status")["config_error"] is not None,
            timeout_s=30,
            what="config_error in status",
        )
        status = daemon.call("status")
        messages: list[str] = []

        def ready_again() -> bool:
            messages.extend(received(notify_socket))
            return "READY=1" in messages

        wait_until(ready_again, timeout_s=30, what="READY=1 after the reload")
        assert "invalid value for 'scan.workers'" in status["config_error"]
        assert [r["path"] for r in status["roots"]] == [str(root)]
        assert catalog_paths(daemon) == files
        reload_messages = [m for m in messages if "RELOADING=1" in m or m == "READY=1"]
        assert reload_messages[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert reload_messages[-1] == "READY=1"
        assert "config_reload_failed" in daemon.log_path.read_text()

        daemon.write_config()
        reload(daemon)
        wait_until(
            lambda: daemon.call("status")["config_error"] is None,
            timeout_s=30,
            what="config_error cleared",
        )
    finally:
        assert daemon.stop() == 0


# ---------------------------------------------------------------------------
# Root replaced by a symlink


def test_root_replaced_by_symlink_is_refused(
    tmp_path: Path, root: Path, tiny_clip: Path
) -> None:
    """1. catalog a root; 2. move it aside and put a symlink to an outside
    folder in its place: the root is ``error``, its entries stay, offline,
    and nothing outside is cataloged; 3. put the folder back: entries online.
    """
    paths = copy_clips(tiny_clip, root / "films", 3)
    outside = tmp_path / "secret"
    copy_clips(tiny_clip, outside, 2)
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        ids = {v["path"]: v["id"] for v in daemon.videos()}

        os.rename(root, tmp_path / "library.keep")
        os.symlink(outside, root)
        wait_until(
            lambda: root_state(daemon, root) == "error",
            timeout_s=60,
            what="the replaced root reported error",
        )
        wait_until(
            lambda: all(v["offline"] for v in daemon.videos()),
            timeout_s=60,
            what="entries marked offline",
        )
        copy_clips(tiny_clip, outside / "new", 2)
        # Long enough for the watcher to deliver the new files' events (its
        # debounce is 1.6 s), which must queue no scan.
        time.sleep(4)
        daemon.wait_idle()
        [status] = daemon.call("status")["roots"]
        assert "is now a symlink to" in status["error"]
        assert sorted(by_path(daemon)) == paths

        os.unlink(root)
        os.rename(tmp_path / "library.keep", root)
        wait_until(
            lambda: not any(v["offline"] for v in daemon.videos()),
            timeout_s=60,
            what="entries back online",
        )
        assert root_state(daemon, root) == "watching"
        back = {v["path"]: v["id"] for v in daemon.videos()}

    assert back == ids


def test_scan_of_symlink_loop_reports_error(tmp_path: Path, root: Path) -> None:
    os.symlink("loop2.mkv", root / "loop1.mkv")
    os.symlink("loop1.mkv", root / "loop2.mkv")
    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        job = daemon.call("scan", {"path": str(root / "loop1.mkv")})
        daemon.wait_idle()
        finished = daemon.call("job.get", {"job_id": job["job_id"]})
        missing = daemon.call("scan", {"path": str(root / "gone.mkv")})
        daemon.wait_idle()
        missing_done = daemon.call("job.get", {"job_id": missing["job_id"]})

    assert finished["status"] == "complete"
    [error] = finished["result"]["errors"]
    assert error["path"] == str(root / "loop1.mkv")
    assert "Too many levels of symbolic links" in error["message"]
    assert missing_done["status"] == "complete"
    assert missing_done["result"]["notes"] == [
        f"not_found: {root / 'gone.mkv'} does not exist"
    ]
