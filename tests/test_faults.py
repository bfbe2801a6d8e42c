"""Storage faults under the real daemon: a full disk and a read-only state folder.

The state folder is a small mounted file system: a size-limited tmpfs for the
full disk, and a loop-mounted ext4 image for the read-only case, because only
a file system error can make a mount read-only while the daemon keeps its
database open for writing (``mount -o remount,ro`` fails with EBUSY then).
Both need root and a kernel that allows the mounts; otherwise the tests skip.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conftest import MakeConfig
from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess, RpcFailure, wait_until
from reelwatch.core import CoreUnavailableError, load_core
from reelwatch.errors import StorageError
from reelwatch.models import Video
from reelwatch.repository import SQLiteRepository
from reelwatch.scanner import Scanner, SettleTracker

CLIP = "edit-list-discard.mp4"
CONFIG = "[scan]\nsettle_s = 0\n"
STORAGE_ERROR = -32010
DISK_FULL = "database or disk is full"
# The log events of a write that failed for lack of space: a job that waits
# to run again, and a background job kept only in memory.
STORAGE_FAILURE_EVENTS = {"job_storage_failed", "job_not_recorded"}

pytestmark = pytest.mark.timeout(300)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def mount_or_skip(*command: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a test file system needs root")
    result = run(*command)
    if result.returncode != 0:
        pytest.skip(f"{' '.join(command)} failed: {result.stderr.strip()}")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    root = tmp_path / "library"
    root.mkdir()
    shutil.copyfile(media / CLIP, root / "clip.mp4")
    add_clips(root, "first", 20)
    return root.resolve()


def add_clips(root: Path, folder: str, count: int) -> None:
    """Add ``count`` hard links of the library's clip under ``root/folder``."""
    target = root / folder
    target.mkdir()
    for index in range(count):
        os.link(root / "clip.mp4", target / f"{index:04d}.mp4")


def disk_paths(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*.mp4")}


def catalog_paths(daemon: DaemonProcess) -> set[str]:
    return {video["path"] for video in daemon.videos()}


def integrity(database: Path) -> list[Any]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full; return it."""
    filler = folder / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.fixture
def tmpfs_daemon(tmp_path: Path, library: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path / "run", [library], extra_config=CONFIG)
    daemon.state_dir.mkdir(parents=True)
    mount_or_skip(
        "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(daemon.state_dir)
    )
    try:
        yield daemon
    finally:
        if daemon.process is not None:
            daemon.stop()
        run("umount", str(daemon.state_dir))


def log_entries(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """Return the daemon's JSON log lines, parsed."""
    text = daemon.log_path.read_text(encoding="utf-8", errors="replace")
    # The last line may be half written.
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


def disk_full_errors(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """Return the error-level log entries whose error is the full disk."""
    return [
        entry
        for entry in log_entries(daemon)
        if entry["level"] == "error" and DISK_FULL in entry.get("error", "")
    ]


def test_full_disk_reported_and_recovered(
    tmpfs_daemon: DaemonProcess, library: Path
) -> None:
    """1. catalog a library; 2. fill the state file system; 3. add files until a
    write fails; 4. status and log name the error, and the database stays
    sound; 5. free the space; 6. the daemon records the new files by itself.
    """
    daemon = tmpfs_daemon
    daemon.start()
    daemon.wait_idle()
    assert catalog_paths(daemon) == disk_paths(library)
    filler = fill(daemon.state_dir)

    # SQLite can still reuse free pages of the database and its WAL, so the
    # first rounds of new files may be recorded in full. Which write fails
    # first varies from run to run: a job row, or a batch of catalog rows.
    rejected: list[RpcFailure] = []
    status: dict[str, Any] = {}
    for round_number in range(10):
        add_clips(library, f"late{round_number}", 300)
        try:
            daemon.call("scan", {"path": str(library / f"late{round_number}")})
        except RpcFailure as exc:
            # The request's own job row could not be written; the watcher's
            # jobs for the same files wait in memory.
            rejected.append(exc)

        def failed_or_recorded() -> bool:
            nonlocal status
            status = daemon.call("status")
            if status["storage_error"] is not None:
                return True
            # Idle alone is not enough: the watcher may not have seen the
            # new folder yet.
            recorded = catalog_paths(daemon) == disk_paths(library)
            return bool(status["idle"]) and recorded

        wait_until(
            failed_or_recorded, timeout_s=60, what="a storage error or every file"
        )
        if status["storage_error"] is not None:
            break
    wait_until(
        lambda: bool(disk_full_errors(daemon)),
        timeout_s=60,
        what="the failed write in the log",
    )
    failures = disk_full_errors(daemon)
    missing = disk_paths(library) - catalog_paths(daemon)

    assert DISK_FULL in status["storage_error"]
    assert "state_dir is full" in status["storage_error"]
    assert failures[0]["event"] in STORAGE_FAILURE_EVENTS
    for failure in rejected:
        assert failure.code == STORAGE_ERROR
        assert DISK_FULL in failure.error["message"]
    # The files not recorded stay queued, so the daemon is not idle.
    assert missing
    assert daemon.call("status")["idle"] is False
    assert integrity(daemon.state_dir / "reelwatch.db") == [("ok",)]

    filler.unlink()
    wait_until(
        lambda: catalog_paths(daemon) == disk_paths(library),
        timeout_s=120,
        what="the files added while the disk was full",
    )
    daemon.wait_idle()

    assert daemon.call("status")["storage_error"] is None
    jobs = daemon.call("jobs.list", {"limit": 1000})["jobs"]
    assert not [job for job in jobs if job["status"] == "running"]
    assert not [job for job in jobs if job["status"] == "failed"]
    events = {entry["event"] for entry in log_entries(daemon)}
    assert "job_handler_crashed" not in events
    # A write failure is logged as such, not as a shutdown that stopped a job.
    assert "job_interrupted" not in events
    assert daemon.stop() == 0
    assert integrity(daemon.state_dir / "reelwatch.db") == [("ok",)]


class FullDiskRepository(SQLiteRepository):
    """A real catalog whose video writes fail as on a full disk while ``full``."""

    full = True

    async def upsert_videos(
        self,
        videos: Sequence[Video],
        *,
        fingerprints: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not self.full:
            await super().upsert_videos(videos, fingerprints=fingerprints)
            return
        # Like a real write, the failing one is shielded and takes long
        # enough for the scan to probe its next batch meanwhile.
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.2)
        raise StorageError(f"catalog database {self.path}: {DISK_FULL}")


@pytest.mark.anyio
async def test_failed_batch_write_raises_storage_error(
    make_config: MakeConfig, library: Path, tmp_path: Path
) -> None:
    """A scan whose batch write fails raises the StorageError itself, which
    the job queue retries, and a later scan records every file. A write of
    the next batch after a failed one would fail too and turn the error into
    an exception group, which the queue ends as a failed job.
    """
    try:
        core = load_core()
    except CoreUnavailableError as exc:
        pytest.skip(f"the Rust core is not built: {exc}")
    repository = FullDiskRepository(str(tmp_path / "catalog.db"))
    await repository.open()
    scanner = Scanner(
        repository=repository,
        core=core,
        config=make_config(probe_batch_size=1),
        settle=SettleTracker(lambda path: anyio.lowlevel.checkpoint()),
    )
    try:
        with pytest.raises(StorageError, match=DISK_FULL):
            await scanner.scan(str(library))
        repository.full = False
        result = await scanner.scan(str(library))
        page = await repository.list_videos(under=None, limit=100, cursor=None)
    finally:
        await repository.close()

    assert {video.path for video in page.videos} == disk_paths(library)
    assert result.skipped == 0


def test_read_only_state_dir_refused(
    tmpfs_daemon: DaemonProcess, library: Path
) -> None:
    """A daemon started on a read-only state folder stops with the reason."""
    daemon = tmpfs_daemon
    daemon.start()
    daemon.wait_idle()
    assert daemon.stop() == 0
    database = daemon.state_dir / "reelwatch.db"
    before = database.read_bytes()
    mount_or_skip("mount", "-o", "remount,ro", str(daemon.state_dir))

    daemon.start(wait=False)
    assert daemon.process is not None
    status = daemon.process.wait(timeout=60)

    log = daemon.log_tail(100)
    assert status == 1, log
    assert str(database) in log
    assert "state_dir" in log
    assert database.read_bytes() == before


def test_state_fs_turns_read_only(tmp_path: Path, library: Path) -> None:
    """1. run on an ext4 image mounted errors=remount-ro; 2. inject a file
    system error, which makes the mount read-only under the open database;
    3. writes fail with the error in status while reads still work; 4. after
    fsck and a fresh mount the database is sound and a restart catches up.
    """
    daemon = DaemonProcess(tmp_path / "run", [library], extra_config=CONFIG)
    image = tmp_path / "state.img"
    with image.open("wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    if run("mkfs.ext4", "-q", "-F", str(image)).returncode != 0:
        pytest.skip("mkfs.ext4 is not available")
    daemon.state_dir.mkdir(parents=True)
    mount_or_skip(
        "mount", "-o", "loop,errors=remount-ro", str(image), str(daemon.state_dir)
    )
    try:
        device = run("findmnt", "-no", "SOURCE", str(daemon.state_dir)).stdout
        trigger = Path("/sys/fs/ext4") / Path(device.strip()).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} is missing: the kernel cannot inject an error")
        daemon.start()
        daemon.wait_idle()
        trigger.write_text("reelwatch fault test\n")

        add_clips(library, "late", 50)
        with pytest.raises(RpcFailure) as rejected:
            daemon.call("scan", {"path": str(library / "late")})
        wait_until(
            lambda: daemon.call("status")["storage_error"] is not None,
            timeout_s=60,
            what="the storage error in status",
        )
        status = daemon.call("status")
        old_entries = catalog_paths(daemon)
        daemon.stop()
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()
        run("umount", str(daemon.state_dir))

    assert rejected.value.code == STORAGE_ERROR
    assert "read-only" in rejected.value.error["message"]
    assert "read-only" in status["storage_error"]
    assert len(old_entries) == 21
    assert run("e2fsck", "-fy", str(image)).returncode in (0, 1)
    mount_or_skip("mount", "-o", "loop", str(image), str(daemon.state_dir))
    try:
        assert integrity(daemon.state_dir / "reelwatch.db") == [("ok",)]
        daemon.start()
        daemon.wait_idle()
        assert catalog_paths(daemon) == disk_paths(library)
        daemon.stop()
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()
        run("umount", str(daemon.state_dir))
