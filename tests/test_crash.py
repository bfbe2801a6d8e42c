"""Crash at any moment: SIGKILL during scans, restart, and the catalog converges.

The library contains a few thousand hard links of one small clip. Each round
changes the library while the daemon runs, kills the daemon with SIGKILL
after a random delay, restarts it, waits for it to finish, and compares the
catalog with the disk through ``videos.list`` and directly in the SQLite
file. The random seed is printed, and ``REELWATCH_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess

CLIP = "edit-list-discard.mp4"
FOLDERS = 20
FILES_PER_FOLDER = 100
ROUNDS = 20
MAX_KILL_DELAY_S = 2.0
CHANGES_PER_ROUND = 40
DEFAULT_SEED = 1207


def library_paths(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*.mp4")}


def change_library(root: Path, rng: random.Random, round_number: int) -> None:
    """Delete some files and add as many new ones, in random folders."""
    existing = sorted(root.rglob("*.mp4"))
    for path in rng.sample(existing, CHANGES_PER_ROUND):
        if path.name != "clip.mp4":
            path.unlink()
    for index in range(CHANGES_PER_ROUND):
        folder = root / f"folder{rng.randrange(FOLDERS):02d}"
        os.link(root / "clip.mp4", folder / f"r{round_number:02d}-{index:03d}.mp4")


def check_catalog(daemon: DaemonProcess, root: Path, context: str) -> None:
    on_disk = library_paths(root)
    listed = [video["path"] for video in daemon.videos()]
    connection = sqlite3.connect(
        f"file:{daemon.state_dir}/reelwatch.db?mode=ro", uri=True
    )
    try:
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT path) FROM videos"
        ).fetchone()
        running = connection.execute(
            "SELECT count(*) FROM jobs WHERE status = 'running'"
        ).fetchone()[0]
    finally:
        connection.close()
    jobs = daemon.call("jobs.list", {"status": "running", "limit": 100})["jobs"]

    assert len(listed) == len(set(listed)), f"{context}: duplicate paths"
    assert set(listed) - on_disk == set(), f"{context}: entries for deleted files"
    assert on_disk - set(listed) == set(), f"{context}: files missing"
    assert rows == distinct == len(on_disk), context
    assert running == 0, f"{context}: job rows left running"
    assert jobs == [], f"{context}: jobs running"


@pytest.mark.timeout(600)
def test_sigkill_during_scans(tmp_path: Path) -> None:
    """20 rounds of change, SIGKILL at a random moment, restart and compare."""
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    seed = int(os.environ.get("REELWATCH_CRASH_SEED", DEFAULT_SEED))
    # Shown with -s or on failure, so that a failing run can be replayed.
    print(f"crash test seed: {seed} (replay with REELWATCH_CRASH_SEED={seed})")  # noqa: T201
    rng = random.Random(seed)
    root = tmp_path / "library"
    root.mkdir()
    shutil.copyfile(media / CLIP, root / "clip.mp4")
    for folder in range(FOLDERS):
        (root / f"folder{folder:02d}").mkdir()
        for index in range(FILES_PER_FOLDER):
            os.link(
                root / "clip.mp4", root / f"folder{folder:02d}" / f"{index:03d}.mp4"
            )
    root = root.resolve()
    daemon = DaemonProcess(
        tmp_path / "run", [root], extra_config="[scan]\nsettle_s = 0\n"
    )
    # Debug logging of every SQLite call would slow each round several times.
    daemon.write_config()
    config = daemon.config_path.read_text(encoding="utf-8")
    daemon.config_path.write_text(
        config.replace('log_level = "debug"', 'log_level = "info"'), encoding="utf-8"
    )

    try:
        daemon.start(wait=False)
        for round_number in range(ROUNDS):
            if round_number:
                change_library(root, rng, round_number)
            delay_s = rng.uniform(0, MAX_KILL_DELAY_S)
            time.sleep(delay_s)
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait(timeout=30)

            daemon.start()
            daemon.wait_idle(timeout_s=120)
            check_catalog(
                daemon,
                root,
                f"seed {seed}, round {round_number}, kill after {delay_s:.3f} s",
            )
    finally:
        daemon.stop()
