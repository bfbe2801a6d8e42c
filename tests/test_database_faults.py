"""Catalog database faults: locks, newer schemas, corruption, checked at start-up.

Each test runs the real daemon process on a real SQLite file. A database the
daemon refuses must still be on disk, byte for byte, afterwards: the daemon
never replaces a catalog it cannot read.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess

CLIP = "edit-list-discard.mp4"
# reelwatch serve exits with 1 when the daemon stops on an error.
EXIT_ERROR = 1


@pytest.fixture
def library(tmp_path: Path) -> Path:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    root = tmp_path / "library"
    root.mkdir()
    for index in range(3):
        shutil.copyfile(media / CLIP, root / f"clip{index}.mp4")
    return root.resolve()


def database_path(daemon: DaemonProcess) -> Path:
    return daemon.state_dir / "reelwatch.db"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_catalog(tmp_path: Path, library: Path) -> DaemonProcess:
    """Run the daemon once so that its database holds three entries, then stop it."""
    daemon = DaemonProcess(tmp_path / "run", [library])
    daemon.start()
    daemon.wait_idle()
    assert len(daemon.videos()) == 3
    assert daemon.stop() == 0
    return daemon


def exit_status(daemon: DaemonProcess, *, timeout_s: float = 60.0) -> int:
    """Start the daemon and return its exit status; it must not start serving."""
    daemon.start(wait=False)
    assert daemon.process is not None
    return daemon.process.wait(timeout=timeout_s)


def test_write_waits_for_lock(tmp_path: Path, library: Path) -> None:
    """A write lock held briefly by another process delays a scan, not fails it.

    Without a busy timeout, SQLite fails at once with "database is locked".
    """
    daemon = DaemonProcess(tmp_path / "run", [library])
    daemon.start()
    daemon.wait_idle()
    holder = sqlite3.connect(
        database_path(daemon), isolation_level=None, check_same_thread=False
    )
    # The scan request itself writes its job row, so the lock must go away
    # while the request waits.
    release = threading.Timer(1.0, holder.execute, ["COMMIT"])
    try:
        holder.execute("BEGIN IMMEDIATE")
        (library / "clip0.mp4").unlink()
        release.start()
        job = daemon.call("scan", {"path": str(library)})
        daemon.wait_idle()
        finished = daemon.call("job.get", {"job_id": job["job_id"]})
    finally:
        release.join()
        holder.close()
        daemon.stop()

    assert finished["status"] == "complete", finished["error"]
    assert finished["result"]["removed"] == 1


def test_newer_schema_refused(tmp_path: Path, library: Path) -> None:
    """A catalog from a newer reelwatch stops the start with a clear message."""
    daemon = make_catalog(tmp_path, library)
    path = database_path(daemon)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    before = digest(path)

    status = exit_status(daemon)

    log = daemon.log_tail(200)
    assert status == EXIT_ERROR, log
    assert "schema version 99" in log
    assert "upgrade reelwatch" in log
    assert digest(path) == before


def test_corrupt_page_refused(tmp_path: Path, library: Path) -> None:
    """The start-up integrity check finds a damaged page and stops the start."""
    daemon = make_catalog(tmp_path, library)
    path = database_path(daemon)
    page_size = 4096
    with path.open("r+b") as handle:
        # Page 2 holds the videos table; garbage over its cell pointers.
        handle.seek(page_size + 8)
        handle.write(b"\xff\xee" * 8)
    before = digest(path)

    status = exit_status(daemon)

    log = daemon.log_tail(200)
    assert status == EXIT_ERROR, log
    assert "integrity check" in log
    assert str(path) in log
    assert digest(path) == before


def test_garbage_file_refused(tmp_path: Path, library: Path) -> None:
    """A file that is not a database is reported, and left as it is."""
    daemon = DaemonProcess(tmp_path / "run", [library])
    daemon.state_dir.mkdir(parents=True)
    path = database_path(daemon)
    path.write_bytes(b"this is not a database\n" * 500)
    before = digest(path)

    status = exit_status(daemon)

    log = daemon.log_tail(200)
    assert status == EXIT_ERROR, log
    assert "not a database" in log
    assert str(path) in log
    assert digest(path) == before


def test_locked_database_reported(tmp_path: Path, library: Path) -> None:
    """Another process that keeps the write lock makes the start fail, with why."""
    daemon = make_catalog(tmp_path, library)
    path = database_path(daemon)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"

        status = exit_status(daemon)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()

    log = daemon.log_tail(200)
    assert status == EXIT_ERROR, log
    assert "database is locked" in log
    assert "another process" in log
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT count(*) FROM videos").fetchone()
    connection.close()
    assert rows == (3,)


def test_integrity_ok_after_restart(tmp_path: Path, library: Path) -> None:
    """A daemon that starts on its own earlier catalog keeps every entry."""
    daemon = make_catalog(tmp_path, library)

    daemon.start()
    daemon.wait_idle()
    videos = daemon.videos()
    daemon.stop()

    assert len(videos) == 3
    connection = sqlite3.connect(database_path(daemon))
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()
