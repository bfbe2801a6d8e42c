"""EIO from a failing disk under a scan root, under the real daemon.

The scan root is an ext4 file system on a loop device. The tests make one
file's data unreadable by shrinking the loop device so that the file's
blocks lie past its end. The block layer then fails every read of them with
EIO, as it does for a disk with bad sectors, while the file system's metadata
and the other files stay readable. Device mapper's ``error`` target would do
the same for any sector range, but many kernels and containers have no device
mapper, and this needs only ``losetup``. Writing the cut-off bytes back and
growing the device again repairs the disk.

The tests need root, ``losetup``, ``mkfs.ext4`` and ``filefrag``, and skip
otherwise.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corpus import SKIP_REASON, corpus_media_dir, expected_from_ffprobe
from daemon_process import running_daemon

# Small corpus clips that the daemon probes correctly, and the clip whose copy
# becomes unreadable.
GOOD_CLIPS = ("edit-list-discard.mp4", "fixture.flv", "bbb-vp9-opus.webm")
VICTIM_CLIP = "fixture2.3gp"
VICTIM_NAME = "victim.3gp"
CONFIG = "[scan]\nsettle_s = 0\n"
IMAGE_BYTES = 16 * 1024 * 1024
SECTOR_BYTES = 512

pytestmark = pytest.mark.timeout(180)

# One extent row of `filefrag -v -b512`: "0: 0.. 5: 30742.. 30747: 6: last,eof".
EXTENT_ROW = re.compile(r"^\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+)\.\.\s*(\d+):", re.MULTILINE)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def extents(path: Path) -> list[tuple[int, int]]:
    """Return ``path``'s extents as (first, last) sectors of the device."""
    result = run("filefrag", "-v", "-b512", str(path))
    assert result.returncode == 0, f"filefrag {path} failed: {result.stderr}"
    found = [
        (int(first), int(last)) for first, last in EXTENT_ROW.findall(result.stdout)
    ]
    assert found, f"filefrag listed no extent for {path}:\n{result.stdout}"
    return found


def drop_page_cache(path: Path) -> None:
    """Drop ``path``'s clean cached pages, so the next read goes to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FailingDisk:
    """An ext4 file system on a loop device whose victim file can be made unreadable."""

    def __init__(self, image: Path, device: str, root: Path, victim: Path) -> None:
        self.image = image
        self.device = device
        self.root = root
        self.victim = victim
        # The device ends just before the victim's first sector while it fails.
        self.cut_bytes = min(first for first, _ in extents(victim)) * SECTOR_BYTES
        self.tail = b""

    def fail_victim(self) -> None:
        """Cut the device short before the victim's data, so reads of it get EIO."""
        with self.image.open("rb") as handle:
            handle.seek(self.cut_bytes)
            self.tail = handle.read()
        os.truncate(self.image, self.cut_bytes)
        self.reread_size()
        drop_page_cache(self.victim)

    def repair(self) -> None:
        """Put the cut-off bytes back and grow the device to its full size."""
        with self.image.open("ab") as handle:
            handle.write(self.tail)
        self.reread_size()

    def reread_size(self) -> None:
        result = run("losetup", "--set-capacity", self.device)
        assert result.returncode == 0, f"losetup -c failed: {result.stderr}"


@pytest.fixture
def media() -> Path:
    folder = corpus_media_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    return folder


@pytest.fixture
def failing_disk(tmp_path: Path, media: Path) -> Iterator[FailingDisk]:
    """Build the file system with the good clips and then the victim, and mount it.

    The victim is written last, so that ext4 places its blocks after those of
    every other file and folder, and a shorter device cuts off only the victim.
    """
    if os.geteuid() != 0:
        pytest.skip("attaching a loop device and mounting it needs root")
    for tool in ("losetup", "mkfs.ext4", "filefrag", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    image = tmp_path / "disk.img"
    with image.open("wb") as handle:
        handle.truncate(IMAGE_BYTES)
    # A journal, or inode tables zeroed by a kernel thread after the mount,
    # could put a write past the cut, which would abort the file system.
    # Without them ext4 writes only metadata at the start of the device.
    formatted = run(
        "mkfs.ext4",
        "-q",
        "-F",
        "-O",
        "^has_journal",
        "-E",
        "lazy_itable_init=0",
        str(image),
    )
    if formatted.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {formatted.stderr.strip()}")
    attached = run("losetup", "--find", "--show", str(image))
    if attached.returncode != 0:
        pytest.skip(f"the kernel refused a loop device: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    root = (tmp_path / "library").resolve()
    root.mkdir()
    mounted = False
    try:
        result = run("mount", device, str(root))
        if result.returncode != 0:
            pytest.skip(f"mounting {device} failed: {result.stderr.strip()}")
        mounted = True
        for name in GOOD_CLIPS:
            shutil.copyfile(media / name, root / name)
            fsync_path(root / name)
        victim = root / VICTIM_NAME
        shutil.copyfile(media / VICTIM_CLIP, victim)
        fsync_path(victim)
        fsync_path(root)
        disk = FailingDisk(image, device, root, victim)
        for other in [root, root / "lost+found", *(root / n for n in GOOD_CLIPS)]:
            last = max(end for _, end in extents(other))
            assert last * SECTOR_BYTES < disk.cut_bytes, (
                f"{other} ends at sector {last}, past the victim's first sector "
                f"{disk.cut_bytes // SECTOR_BYTES}: cutting the device would break it"
            )
        yield disk
    finally:
        if mounted and run("umount", str(root)).returncode != 0:
            # Busy because a failed test left a process inside: detach it
            # now, and the loop device follows once the last user is gone.
            run("umount", "--lazy", str(root))
        run("losetup", "--detach", device)
        image.unlink(missing_ok=True)


def by_path(videos: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {video["path"]: video for video in videos}


def assert_matches_ffprobe(video: dict[str, Any], media: Path) -> None:
    expected = expected_from_ffprobe(media)
    assert expected.duration_s is not None
    assert video["error"] is None
    assert video["width"] == expected.width
    assert video["height"] == expected.height
    assert video["video_codec"] == expected.video_codec
    tolerance = max(0.1, 0.005 * expected.duration_s)
    assert video["duration_s"] == pytest.approx(expected.duration_s, abs=tolerance)


def test_victim_read_fails_with_eio(failing_disk: FailingDisk, media: Path) -> None:
    """Reading the victim fails with EIO, and the other files read back intact."""
    failing_disk.fail_victim()

    with pytest.raises(OSError) as failed:
        failing_disk.victim.read_bytes()
    for name in GOOD_CLIPS:
        drop_page_cache(failing_disk.root / name)
        assert (failing_disk.root / name).read_bytes() == (media / name).read_bytes()
    dd = run("dd", f"if={failing_disk.victim}", "of=/dev/null")

    assert failed.value.errno == errno.EIO
    assert dd.returncode != 0
    assert "Input/output error" in dd.stderr

    failing_disk.repair()
    drop_page_cache(failing_disk.victim)
    assert failing_disk.victim.read_bytes() == (media / VICTIM_CLIP).read_bytes()


def test_scan_survives_eio(
    failing_disk: FailingDisk, media: Path, tmp_path: Path
) -> None:
    """1. make the victim unreadable; 2. start the daemon on the root; 3. the
    start-up scan completes, the victim's entry has an `io` error naming EIO,
    and the other files are cataloged with ffprobe's values; 4. a scan of the
    victim itself completes, and the daemon keeps responding.
    """
    failing_disk.fail_victim()
    victim = str(failing_disk.victim)

    with running_daemon(
        tmp_path / "run", [failing_disk.root], extra_config=CONFIG
    ) as daemon:
        daemon.wait_idle()
        videos = by_path(daemon.videos())
        startup_jobs = daemon.call("jobs.list", {"limit": 10})["jobs"]
        victim_job = daemon.call("scan", {"path": victim})
        daemon.wait_idle()
        victim_done = daemon.call("job.get", {"job_id": victim_job["job_id"]})
        victim_after = daemon.call("video.get", {"path": victim})
        pong = daemon.call("ping")
        status = daemon.call("status")

    assert videos[victim]["error_kind"] == "io"
    assert "input/output error" in videos[victim]["error"].lower()
    assert videos[victim]["duration_s"] is None
    for name in GOOD_CLIPS:
        assert_matches_ffprobe(videos[str(failing_disk.root / name)], media / name)
    assert len(videos) == len(GOOD_CLIPS) + 1
    [root_scan] = [job for job in startup_jobs if job["path"] == str(failing_disk.root)]
    assert root_scan["status"] == "complete"
    assert root_scan["result"]["error_count"] == 1
    [error] = root_scan["result"]["errors"]
    assert error["path"] == victim
    assert error["kind"] == "io"
    assert "input/output error" in error["message"].lower()
    assert victim_done["status"] == "complete"
    assert victim_after["error_kind"] == "io"
    assert pong == "pong"
    assert [root["state"] for root in status["roots"]] == ["watching"]


def test_rescan_clears_io_error_after_repair(
    failing_disk: FailingDisk, media: Path, tmp_path: Path
) -> None:
    """1. catalog the victim while it fails with EIO; 2. repair the disk;
    3. `rescan` the root; 4. the victim's entry has ffprobe's values and no
    error.
    """
    failing_disk.fail_victim()
    victim = str(failing_disk.victim)

    with running_daemon(
        tmp_path / "run", [failing_disk.root], extra_config=CONFIG
    ) as daemon:
        daemon.wait_idle()
        before = daemon.call("video.get", {"path": victim})
        if before["error_kind"] != "io":
            # Not an AssertionError, so that the expected failure cannot
            # hide a disk that never failed.
            pytest.fail(f"the victim was not cataloged with an io error: {before}")
        failing_disk.repair()
        daemon.call("rescan", {"root": str(failing_disk.root)})
        daemon.wait_idle()
        after_rescan = daemon.call("video.get", {"path": victim})
        daemon.call("scan", {"path": victim})
        daemon.wait_idle()
        after_scan = daemon.call("video.get", {"path": victim})

    assert after_scan["error_kind"] is None, "a scan of the file left the io error"
    assert after_rescan["error_kind"] is None, "a rescan left the io error"
    assert_matches_ffprobe(after_rescan, media / VICTIM_CLIP)
