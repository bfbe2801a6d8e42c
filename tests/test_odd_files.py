"""Unreadable and odd files: each gets a per-path error or is skipped, and scans go on.

For the permission cases the daemon process runs as the unprivileged user
``nobody`` (uid 65534), because permission bits do not stop root. Its work
folder is a private temporary folder that ``nobody`` may enter, outside
pytest's own temporary tree, which only root can enter.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest

from conftest import MakeConfig
from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess, running_daemon, wait_until
from reelwatch.core import CoreUnavailableError, ProbeResult, RustCore, load_core
from reelwatch.repository import SQLiteRepository
from reelwatch.scanner import Scanner, SettleTracker

CLIP = "edit-list-discard.mp4"
CLIP_DURATION_S = 2.0
CLIP_VIDEO_CODEC = "h264"
NOBODY = 65534


class UnprivilegedDaemon(DaemonProcess):
    """A daemon process started through setpriv as ``nobody``."""

    def start(self, *, wait: bool = True) -> None:
        if not self.config_path.exists():
            self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELWATCH_")}
        env.pop("NOTIFY_SOCKET", None)
        command = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-m",
            "reelwatch",
            "serve",
            "--config",
            str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        if wait:
            wait_until(self.is_answering, timeout_s=30, what="the daemon's socket")


@pytest.fixture
def workdir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("switching to the user nobody needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if not _nobody_can_import_reelwatch():
        pytest.skip(
            "the user nobody cannot import reelwatch from this checkout or its "
            "venv: a parent folder is private (mode 0700); clone into a folder "
            "others may enter to run this test"
        )
    path = Path(tempfile.mkdtemp(prefix="reelwatch-odd-")).resolve()
    path.chmod(0o755)
    try:
        yield path
    finally:
        for folder in path.rglob("*"):
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(0o755)
        shutil.rmtree(path)


def _nobody_can_import_reelwatch() -> bool:
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        sys.executable,
        "-c",
        "import reelwatch._core",
    ]
    completed = subprocess.run(
        command, capture_output=True, check=False, timeout=60, cwd="/"
    )
    return completed.returncode == 0


def make_odd_tree(root: Path, media: Path) -> dict[str, Path]:
    """Create the odd files; return the ones the checks refer to by name."""
    root.mkdir()
    files = {
        "good": root / "good.mp4",
        "unreadable": root / "unreadable.mp4",
        "empty": root / "empty.mp4",
        "newline": root / "new\nline.mp4",
        "bad_utf8": Path(os.fsdecode(bytes(root) + b"/bad\xff\xfe.mp4")),
        "fifo": root / "pipe.mp4",
        "device": root / "device.mkv",
        "locked": root / "locked",
    }
    for name in ("good", "unreadable", "newline", "bad_utf8"):
        shutil.copyfile(media / CLIP, files[name])
    files["unreadable"].chmod(0)
    files["empty"].touch()
    os.mkfifo(files["fifo"])
    try:
        os.mknod(files["device"], 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        files["device"].symlink_to("/dev/null")
    files["locked"].mkdir()
    shutil.copyfile(media / CLIP, files["locked"] / "hidden.mp4")
    files["locked"].chmod(0)
    return files


def by_path(videos: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {video["path"]: video for video in videos}


def test_odd_files_as_nobody(workdir: Path) -> None:
    """1. build the tree; 2. run the daemon as nobody; 3. each odd file has
    its error or is absent, the readable files are cataloged, and the scan of
    the FIFO itself finishes.
    """
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    root = workdir / "library"
    files = make_odd_tree(root, media)
    run = workdir / "run"
    run.mkdir()
    os.chown(run, NOBODY, NOBODY)
    daemon = UnprivilegedDaemon(run, [root], extra_config="[scan]\nsettle_s = 0\n")
    daemon.write_config()

    daemon.start()
    try:
        daemon.wait_idle()
        videos = by_path(daemon.videos())
        jobs = daemon.call("jobs.list", {"limit": 10})["jobs"]
        fifo_job = daemon.call("scan", {"path": str(files["fifo"])})
        daemon.wait_idle()
        fifo_done = daemon.call("job.get", {"job_id": fifo_job["job_id"]})
        assert daemon.call("ping") == "pong"
    finally:
        daemon.stop()

    assert videos[str(files["good"])]["duration_s"] == pytest.approx(CLIP_DURATION_S)
    assert videos[str(files["newline"])]["error"] is None
    [bad_utf8] = [v for v in videos.values() if Path(v["path"]).name.startswith("bad")]
    raw = base64.b64decode(bad_utf8["path_bytes_b64"])
    assert raw == os.fsencode(files["bad_utf8"])
    assert bad_utf8["duration_s"] == pytest.approx(CLIP_DURATION_S)
    assert videos[str(files["unreadable"])]["error_kind"] == "permission_denied"
    assert videos[str(files["empty"])]["error_kind"] == "empty"
    assert str(files["fifo"]) not in videos
    assert str(files["device"]) not in videos
    assert not any(path.startswith(str(files["locked"])) for path in videos)
    [root_scan] = [job for job in jobs if job["path"] == str(root)]
    assert root_scan["status"] == "complete"
    errors = {e["path"]: e["kind"] for e in root_scan["result"]["errors"]}
    assert errors[str(files["locked"])] == "permission_denied"
    assert fifo_done["status"] == "complete"


def root_status(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    [status] = [r for r in daemon.call("status")["roots"] if r["path"] == str(root)]
    return dict(status)


def scan_errors(daemon: DaemonProcess, path: Path) -> dict[str, tuple[str, str]]:
    """Return the errors of the newest finished scan of ``path``, by path."""
    jobs = daemon.call("jobs.list", {"limit": 100})["jobs"]
    [newest, *_] = [
        job for job in jobs if job["path"] == str(path) and job["status"] == "complete"
    ]
    errors = newest["result"]["errors"]
    return {error["path"]: (error["kind"], error["message"]) for error in errors}


def test_special_files_keep_root_online(tmp_path: Path) -> None:
    """Special files named like videos are skipped without taking the root
    offline. The daemon runs as the current user with the Rust core.

    1. A FIFO named ``x.mp4``, a device named ``device.mkv`` and an empty
       file sit beside a real clip. The clip is cataloged with its duration
       and codec, the empty file has its error, the FIFO and the device are
       skipped with their reason, and the root is watched.
    2. The root goes away, and its entries are marked offline.
    3. The root comes back with the FIFO still in it, and its entries are
       online again. A walk whose only errors were skipped special files
       used to leave them offline.
    """
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    root = (tmp_path / "library").resolve()
    root.mkdir()
    clip = root / "clip.mp4"
    shutil.copyfile(media / CLIP, clip)
    empty = root / "empty.mp4"
    empty.touch()
    fifo = root / "x.mp4"
    os.mkfifo(fifo)
    device = root / "device.mkv"
    try:
        os.mknod(device, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        # Only root may create device nodes, so others check the FIFO alone.
        device_reason = None
    else:
        device_reason = (
            "not_a_file",
            "not a regular file (a character device); skipped",
        )
    aside = tmp_path / "unplugged"

    with running_daemon(
        tmp_path / "run", [root], extra_config="[scan]\nsettle_s = 0\n"
    ) as daemon:
        daemon.wait_idle()
        first_root = root_status(daemon, root)
        first = by_path(daemon.videos())
        first_errors = scan_errors(daemon, root)

        os.rename(root, aside)
        wait_until(
            lambda: all(v["offline"] for v in daemon.videos()),
            timeout_s=60,
            what="entries marked offline",
        )
        os.rename(aside, root)
        wait_until(
            lambda: root_status(daemon, root)["state"] == "watching",
            timeout_s=60,
            what="the root watched again",
        )
        daemon.wait_idle()
        back = by_path(daemon.videos())
        back_errors = scan_errors(daemon, root)

    assert first_root["state"] == "watching"
    assert first_root["error"] is None
    assert first[str(clip)]["duration_s"] == pytest.approx(CLIP_DURATION_S)
    assert first[str(clip)]["video_codec"] == CLIP_VIDEO_CODEC
    assert first[str(clip)]["error"] is None
    assert first[str(clip)]["offline"] is False
    assert first[str(empty)]["error_kind"] == "empty"
    assert str(fifo) not in first
    assert str(device) not in first
    fifo_reason = ("not_a_file", "not a regular file (a FIFO); skipped")
    assert first_errors[str(fifo)] == fifo_reason
    if device_reason is not None:
        assert first_errors[str(device)] == device_reason
    assert back_errors[str(fifo)] == fifo_reason
    assert back[str(clip)]["offline"] is False
    assert back[str(empty)]["offline"] is False
    assert back[str(clip)]["id"] == first[str(clip)]["id"]


class DeletingCore(RustCore):
    """The Rust core, but the victim file is deleted just before each probe."""

    def __init__(self, victim: Path) -> None:
        try:
            core = load_core()
        except CoreUnavailableError as exc:
            pytest.skip(f"the Rust core is not built: {exc}")
        super().__init__(core._core)
        self.victim = victim

    async def probe(
        self, paths: Any, *, roots: Any = None, fingerprint: bool = False
    ) -> list[ProbeResult]:
        self.victim.unlink(missing_ok=True)
        return await super().probe(paths, roots=roots, fingerprint=fingerprint)


@pytest.mark.anyio
async def test_file_removed_before_probe(
    make_config: MakeConfig, library: Path, tmp_path: Path
) -> None:
    """A file that goes away between the walk and the probe is left out, quietly."""
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    shutil.copyfile(media / CLIP, library / "stays.mp4")
    shutil.copyfile(media / CLIP, library / "goes.mp4")
    config = make_config()
    repository = SQLiteRepository(str(tmp_path / "catalog.db"))
    await repository.open()
    settle = SettleTracker(lambda path: anyio.lowlevel.checkpoint())
    scanner = Scanner(
        repository=repository,
        core=DeletingCore(library / "goes.mp4"),
        config=config,
        settle=settle,
    )
    try:
        result = await scanner.scan(str(library))
        page = await repository.list_videos(under=None, limit=10, cursor=None)
    finally:
        await repository.close()

    assert [Path(video.path).name for video in page.videos] == ["stays.mp4"]
    assert result.error_count == 0
    assert result.scanned == 2
