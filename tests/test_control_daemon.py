"""The control protocol against the real daemon process: sync, cursors, hostile clients.

Each test starts ``reelwatch serve`` on a temporary root and talks to it over
its Unix socket with plain sockets or the ``reelwatch`` command. Memory checks
read the daemon's resident set size from /proc before and after.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corpus import corpus_media_dir
from daemon_process import DaemonProcess, running_daemon, wait_until

# Growth of the daemon's resident memory that the hostile tests tolerate. A
# leak proportional to the input (10 MiB lines, thousands of notifications)
# would pass it; the daemon itself needs some for its connections.
RSS_GROWTH_LIMIT_KB = 96 * 1024

FAST_SETTLE = "[scan]\nsettle_s = 0.5\n"


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short, so the socket path stays under the 107-byte limit.
    with tempfile.TemporaryDirectory(prefix="rwd-") as directory:
        yield Path(directory)


@pytest.fixture
def library(workdir: Path) -> Path:
    root = workdir / "library"
    root.mkdir()
    return root


def clip_source() -> bytes:
    """Return the bytes of a real clip, or of a file the core reports as an error."""
    media = corpus_media_dir()
    if media is not None and (media / "flower.mp4").is_file():
        return (media / "flower.mp4").read_bytes()
    return b"not really an mp4 file"


def rss_kb(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1])


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELWATCH_")}
    env["REELWATCH_SOCKET"] = str(daemon.socket_path)
    return subprocess.run(
        [sys.executable, "-m", "reelwatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def connect(daemon: DaemonProcess) -> socket.socket:
    """Connect, retrying while the daemon's listen backlog is full."""
    for _ in range(1000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        try:
            sock.connect(str(daemon.socket_path))
        except BlockingIOError:
            # A Unix socket refuses with EAGAIN instead of waiting when the
            # backlog is full; the daemon accepts the queued ones meanwhile.
            sock.close()
            time.sleep(0.01)
            continue
        return sock
    raise AssertionError("the daemon's listen backlog stayed full")


def read_line(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    result: dict[str, Any] = json.loads(data)
    return result


def still_answering(daemon: DaemonProcess) -> bool:
    answer: str = daemon.call("ping")
    return answer == "pong"


# ---------------------------------------------------------------------------
# sync


def test_cp_then_videos_sync_lists_clip(workdir: Path, library: Path) -> None:
    """Each of several copies is listed by the very next `videos --sync`."""
    source = workdir / "clip.mp4"
    source.write_bytes(clip_source())
    with running_daemon(workdir / "d", [library]) as daemon:
        daemon.wait_idle()
        for index in range(3):
            target = library / f"clip{index}.mp4"
            done = subprocess.run(
                [
                    "bash",
                    "-c",
                    'cp "$1" "$2" && "$3" -m reelwatch videos --sync --jsonl',
                    "sh",
                    str(source),
                    str(target),
                    sys.executable,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "REELWATCH_SOCKET": str(daemon.socket_path)},
                timeout=120,
                check=False,
            )
            paths = [json.loads(line)["path"] for line in done.stdout.splitlines()]

            assert done.returncode == 0, done.stderr
            assert str(target) in paths


def test_video_sync_sees_deleted_file(workdir: Path, library: Path) -> None:
    clip = library / "gone.mp4"
    clip.write_bytes(clip_source())
    with running_daemon(workdir / "d", [library], extra_config=FAST_SETTLE) as daemon:
        daemon.wait_idle()
        clip.unlink()
        done = cli(daemon, "video", str(clip), "--sync")

    assert done.returncode == 1
    assert "no catalog entry" in done.stderr


def test_sync_timeout_is_exit_5(workdir: Path, library: Path) -> None:
    with running_daemon(workdir / "d", [library]) as daemon:
        done = cli(daemon, "status", "--sync", "--sync-timeout", "0.000001")

    assert done.returncode == 5
    assert "sync timed out" in done.stderr


# ---------------------------------------------------------------------------
# since, stats, metrics, cancel on the real catalog


def test_since_reports_added_and_removed(workdir: Path, library: Path) -> None:
    (library / "old.mp4").write_bytes(clip_source())
    with running_daemon(workdir / "d", [library], extra_config=FAST_SETTLE) as daemon:
        daemon.wait_idle()
        listing = daemon.call("videos.list")
        old_id = listing["videos"][0]["id"]
        (library / "old.mp4").unlink()
        (library / "new.mp4").write_bytes(clip_source())
        changes = daemon.call("videos.list", {"since": listing["cursor"], "sync": True})

    assert [v["path"] for v in changes["videos"]] == [str(library / "new.mp4")]
    assert changes["removed"] == [{"id": old_id, "path": str(library / "old.mp4")}]
    assert changes["fresh_instance"] is False


def test_cursor_from_earlier_run_is_fresh(workdir: Path, library: Path) -> None:
    daemon = DaemonProcess(workdir / "d", [library])
    daemon.start()
    try:
        cursor = daemon.call("videos.list")["cursor"]
    finally:
        daemon.stop()
    daemon.start()
    try:
        answer = daemon.call("videos.list", {"since": cursor})
    finally:
        daemon.stop()

    assert answer["fresh_instance"] is True
    assert answer["cursor"] != cursor


def test_stats_and_metrics_count_the_catalog(workdir: Path, library: Path) -> None:
    for index in range(3):
        (library / f"v{index}.mp4").write_bytes(clip_source())
    with running_daemon(workdir / "d", [library]) as daemon:
        daemon.wait_idle()
        stats = daemon.call("stats")
        metrics = daemon.call("metrics").splitlines()
        config = daemon.call("config.get")

    assert stats["videos"] == 3
    assert "reelwatch_catalog_videos 3" in metrics
    assert "reelwatch_probes_total 3" in metrics
    assert config["allowed_scan_roots"] == [str(library)]
    assert os.path.isabs(config["database_path"])


def test_cancel_queued_rescan(workdir: Path, library: Path) -> None:
    """A cancelled job ends cancelled, or complete when it finished first."""
    with running_daemon(workdir / "d", [library]) as daemon:
        daemon.wait_idle()
        [queued] = daemon.call("rescan")["jobs"]
        answer = daemon.call("job.cancel", {"job_id": queued["job_id"]})
        daemon.wait_idle()
        final = daemon.call("job.get", {"job_id": queued["job_id"]})

    assert answer["id"] == queued["job_id"]
    assert final["status"] in ("cancelled", "complete")


# ---------------------------------------------------------------------------
# File names that are not UTF-8


def test_non_utf8_name_round_trips(workdir: Path, library: Path) -> None:
    raw_path = os.fsencode(library) + b"/caf\xe9.mp4"
    with open(raw_path, "wb") as stream:
        stream.write(clip_source())
    with running_daemon(workdir / "d", [library]) as daemon:
        page = daemon.call("videos.list", {"sync": True})
        [video] = page["videos"]
        by_bytes = daemon.call("video.get", {"path_bytes_b64": video["path_bytes_b64"]})
        done = cli(daemon, "videos", "--jsonl")
        table = cli(daemon, "videos")

    assert video["path"] == str(library) + "/caf\ufffd.mp4"
    assert base64.b64decode(video["path_bytes_b64"]) == raw_path
    assert by_bytes["id"] == video["id"]
    assert done.returncode == 0, done.stderr
    assert base64.b64decode(json.loads(done.stdout)["path_bytes_b64"]) == raw_path
    assert table.returncode == 0, table.stderr
    assert "caf\ufffd.mp4" in table.stdout


# ---------------------------------------------------------------------------
# Hostile clients


def test_ten_mib_line_is_rejected(workdir: Path, library: Path) -> None:
    with running_daemon(workdir / "d", [library]) as daemon:
        daemon.wait_idle()
        before = rss_kb(daemon)
        with connect(daemon) as sock:
            sender = threading.Thread(target=_send_ignoring_errors, args=(sock,))
            sender.start()
            answer = read_line(sock)
            sender.join()
        alive = still_answering(daemon)
        after = rss_kb(daemon)

    assert answer["error"]["code"] == -32004
    assert answer["error"]["data"]["reason"] == "line_too_long"
    assert alive
    assert after - before < RSS_GROWTH_LIMIT_KB


def _send_ignoring_errors(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(b"[" * (10 * 1024 * 1024) + b"\n")


def test_invalid_utf8_then_valid_request(workdir: Path, library: Path) -> None:
    with running_daemon(workdir / "d", [library]) as daemon, connect(daemon) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"p\xffing"}\n')
        error = read_line(sock)
        sock.sendall(b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n')
        answer = read_line(sock)

    assert error["error"]["code"] == -32700
    assert error["error"]["data"]["reason"] == "invalid_utf8"
    assert answer["result"] == "pong"


@contextlib.contextmanager
def raised_fd_limit(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard limit of open files is {hard}, below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_thousand_idle_connections(workdir: Path, library: Path) -> None:
    config = "[socket]\nmax_connections = 1100\n"
    # The daemon inherits this process's limit, and both ends need a
    # descriptor per connection.
    with (
        raised_fd_limit(2400),
        running_daemon(workdir / "d", [library], extra_config=config) as daemon,
    ):
        daemon.wait_idle()
        before = rss_kb(daemon)
        idle = [connect(daemon) for _ in range(1000)]
        try:
            metrics = daemon.call("metrics").splitlines()
            alive = still_answering(daemon)
            during = rss_kb(daemon)
        finally:
            for sock in idle:
                sock.close()
        wait_until(
            lambda: "reelwatch_connections 1" in daemon.call("metrics").splitlines(),
            timeout_s=30,
            what="the idle connections to close",
        )
        after = rss_kb(daemon)

    assert "reelwatch_connections 1001" in metrics
    assert alive
    assert during - before < RSS_GROWTH_LIMIT_KB
    assert after - before < RSS_GROWTH_LIMIT_KB


def test_subscriber_that_never_reads_is_dropped(workdir: Path, library: Path) -> None:
    config = "[socket]\nmax_subscription_backlog = 50\n" + "[scan]\nsettle_s = 0\n"
    with running_daemon(workdir / "d", [library], extra_config=config) as daemon:
        daemon.wait_idle()
        before = rss_kb(daemon)
        with connect(daemon) as hostile:
            # A small receive buffer makes the backlog fill quickly.
            hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hostile.sendall(
                b'{"jsonrpc":"2.0","id":1,"method":"subscribe",'
                b'"params":{"topics":["video.added","job.updated"]}}\n'
            )
            subscribed = read_line(hostile)
            for index in range(3000):
                (library / f"junk{index:04}.mp4").write_bytes(b"junk")
            daemon.call("rescan")
            daemon.wait_idle(timeout_s=300)
            metrics = daemon.call("metrics").splitlines()
            alive = still_answering(daemon)
            after = rss_kb(daemon)
            hostile.settimeout(30)
            closed = _drain_until_closed(hostile)

    assert subscribed["result"]["max_backlog"] == 50
    assert "reelwatch_subscriptions_dropped_total 1" in metrics
    assert "reelwatch_subscribers 0" in metrics
    assert alive
    assert closed
    assert after - before < RSS_GROWTH_LIMIT_KB


def _drain_until_closed(sock: socket.socket) -> bool:
    while True:
        if not sock.recv(65536):
            return True


def test_client_gone_mid_request(workdir: Path, library: Path) -> None:
    for index in range(20):
        (library / f"v{index}.mp4").write_bytes(clip_source())
    with running_daemon(workdir / "d", [library]) as daemon:
        daemon.wait_idle()
        before = rss_kb(daemon)
        for _ in range(50):
            with connect(daemon) as sock:
                sock.sendall(
                    b'{"jsonrpc":"2.0","id":1,"method":"videos.list",'
                    b'"params":{"sync":true,"limit":1000}}\n'
                )
        # The daemon finishes or drops those requests; the count of open
        # connections returns to this test's own one.
        wait_until(
            lambda: "reelwatch_connections 1" in daemon.call("metrics").splitlines(),
            timeout_s=60,
            what="the abandoned connections to close",
        )
        videos = daemon.videos()
        after = rss_kb(daemon)

    assert len(videos) == 20
    assert after - before < RSS_GROWTH_LIMIT_KB


def test_cli_events_prints_notifications(workdir: Path, library: Path) -> None:
    with running_daemon(workdir / "d", [library], extra_config=FAST_SETTLE) as daemon:
        daemon.wait_idle()
        env = {**os.environ, "REELWATCH_SOCKET": str(daemon.socket_path)}
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reelwatch",
                "events",
                "--jsonl",
                "--topic",
                "video.added",
                "--count",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_until(
                lambda: (
                    "reelwatch_subscribers 1" in daemon.call("metrics").splitlines()
                ),
                timeout_s=30,
                what="the events command to subscribe",
            )
            (library / "added.mp4").write_bytes(clip_source())
            out, err = follower.communicate(timeout=60)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()

    event = json.loads(out)
    assert follower.returncode == 0, err
    assert event["method"] == "video.added"
    assert event["params"]["path"] == str(library / "added.mp4")
