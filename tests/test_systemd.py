"""Tests for sd_notify messages and socket activation, against real Unix sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import reelwatch
from reelwatch.systemd import (
    Notifier,
    SocketActivationError,
    listen_fds,
    run_watchdog,
)

pytestmark = pytest.mark.timeout(20)

# How long a test waits for a datagram before it fails; generous because the
# machine may be busy, and never part of an assertion.
RECEIVE_TIMEOUT_S = 10.0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's notification socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECEIVE_TIMEOUT_S)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def receive_until(sock: socket.socket, last: str) -> list[str]:
    messages: list[str] = []
    while not messages or messages[-1] != last:
        messages.append(receive(sock))
    return messages


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestNotifier:
    def test_notifier_lifecycle_messages_in_order(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        sock, path = notify_socket
        notifier = Notifier({"NOTIFY_SOCKET": path})

        before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        with notifier:
            assert notifier.ready()
            assert notifier.status("3 roots watched, 12 jobs pending")
            assert notifier.reloading()
            after_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert notifier.ready()
            assert notifier.stopping()

        assert receive(sock) == "READY=1"
        assert receive(sock) == "STATUS=3 roots watched, 12 jobs pending"
        reloading, monotonic = receive(sock).split("\n")
        assert reloading == "RELOADING=1"
        key, value = monotonic.split("=")
        assert key == "MONOTONIC_USEC"
        assert before_usec <= int(value) <= after_usec
        assert receive(sock) == "READY=1"
        assert receive(sock) == "STOPPING=1"

    def test_notifier_status_folds_newlines(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        sock, path = notify_socket

        with Notifier({"NOTIFY_SOCKET": path}) as notifier:
            notifier.status("2 roots\nreload failed: bad key")

        assert receive(sock) == "STATUS=2 roots reload failed: bad key"

    def test_notifier_extend_timeout_in_microseconds(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        sock, path = notify_socket

        with Notifier({"NOTIFY_SOCKET": path}) as notifier:
            notifier.extend_timeout(90)

        assert receive(sock) == "EXTEND_TIMEOUT_USEC=90000000"

    def test_notifier_abstract_socket_address(self) -> None:
        name = f"reelwatch-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(b"\0" + name.encode())
            sock.settimeout(RECEIVE_TIMEOUT_S)

            with Notifier({"NOTIFY_SOCKET": "@" + name}) as notifier:
                assert notifier.ready()

            assert receive(sock) == "READY=1"

    def test_notifier_without_notify_socket_sends_nothing(self) -> None:
        fds_before = open_fd_count()
        notifier = Notifier({"WATCHDOG_USEC": "1000000"})

        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("idle")
        assert not notifier.reloading()
        assert not notifier.watchdog()
        assert not notifier.stopping()
        assert notifier.watchdog_interval() is None
        # No socket was opened, so nothing can have been sent anywhere.
        assert open_fd_count() == fds_before

    def test_notifier_missing_socket_returns_false(self, tmp_path: Path) -> None:
        with Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")}) as notifier:
            assert notifier.enabled
            assert not notifier.ready()

    def test_notifier_relative_address_disabled(self) -> None:
        notifier = Notifier({"NOTIFY_SOCKET": "relative/notify.sock"})

        assert not notifier.enabled
        assert not notifier.ready()


class TestWatchdogInterval:
    @pytest.mark.parametrize(
        ("extra_env", "expected_s"),
        [
            ({"WATCHDOG_USEC": "30000000"}, 30.0),
            ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
            ({"WATCHDOG_USEC": "thirty"}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({}, None),
        ],
        ids=["usec", "own-pid", "other-pid", "not-a-number", "zero", "unset"],
    )
    def test_watchdog_interval_from_environment(
        self, extra_env: dict[str, str], expected_s: float | None
    ) -> None:
        notifier = Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **extra_env})

        assert notifier.watchdog_interval() == expected_s


class TestRunWatchdog:
    @pytest.mark.anyio
    async def test_run_watchdog_sequence_with_reload(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        """The daemon's notifications arrive in order around watchdog pings.

        1. READY=1 and STATUS= are sent at start-up.
        2. run_watchdog pings while the loop runs; the test waits for two pings.
        3. A reload sends RELOADING=1 with MONOTONIC_USEC, then READY=1.
        4. Shutdown sends STOPPING=1.
        """
        sock, path = notify_socket
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

        notifier.ready()
        notifier.status("1 root watched")
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_watchdog, notifier)
            assert await anyio.to_thread.run_sync(receive, sock) == "READY=1"
            assert (
                await anyio.to_thread.run_sync(receive, sock) == "STATUS=1 root watched"
            )
            assert await anyio.to_thread.run_sync(receive, sock) == "WATCHDOG=1"
            assert await anyio.to_thread.run_sync(receive, sock) == "WATCHDOG=1"
            tg.cancel_scope.cancel()
        notifier.reloading()
        notifier.ready()
        notifier.stopping()
        notifier.close()

        # A ping may have left between the second one and the cancellation.
        rest = receive_until(sock, "STOPPING=1")
        while rest[0] == "WATCHDOG=1":
            rest.pop(0)
        assert len(rest) == 3
        assert rest[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert rest[1] == "READY=1"
        assert rest[2] == "STOPPING=1"

    @pytest.mark.anyio
    async def test_run_watchdog_explicit_timeout(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        sock, path = notify_socket
        notifier = Notifier({"NOTIFY_SOCKET": path})

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_watchdog(notifier, timeout_s=0.1))
            assert await anyio.to_thread.run_sync(receive, sock) == "WATCHDOG=1"
            tg.cancel_scope.cancel()
        notifier.close()

    @pytest.mark.anyio
    async def test_run_watchdog_disabled_returns(
        self, notify_socket: tuple[socket.socket, str]
    ) -> None:
        sock, path = notify_socket
        notifier = Notifier({"NOTIFY_SOCKET": path})

        with anyio.fail_after(RECEIVE_TIMEOUT_S):
            await run_watchdog(notifier)

        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)


# A child process that plays the part of a socket-activated daemon: it moves
# the descriptor it was given to fd 3 and sets LISTEN_PID, as systemd does
# between fork and exec, then calls listen_fds(). With a socket, it serves one
# connection and replies with what it saw.
_CHILD = r"""
import json, os, socket, sys
import structlog
from reelwatch.systemd import listen_fds, SocketActivationError

# Keep stdout for the report below.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

passed_fd, listen_pid = int(sys.argv[1]), sys.argv[2]
os.dup2(passed_fd, 3)
os.close(passed_fd)
os.environ["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
try:
    sockets = listen_fds()
except SocketActivationError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
report = {
    "names": [s.name for s in sockets],
    "inheritable": [os.get_inheritable(s.socket.fileno()) for s in sockets],
    "environment": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}
if sockets:
    conn, _ = sockets[0].socket.accept()
    with conn:
        report["request"] = conn.recv(100).decode()
        conn.sendall(b"pong")
print(json.dumps(report))
"""


def child_env(**listen: str) -> dict[str, str]:
    package_root = Path(reelwatch.__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_root), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(listen)
    return env


def run_child(fd: int, listen_pid: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(fd), listen_pid],
        env=env,
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        text=True,
    )


class TestListenFds:
    def test_listen_fds_adopts_prebound_socket(self, tmp_path: Path) -> None:
        path = tmp_path / "control.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen()
        env = child_env(LISTEN_FDS="1", LISTEN_FDNAMES="control")

        child = run_child(server.fileno(), "self", env)
        server.close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(RECEIVE_TIMEOUT_S)
            client.connect(str(path))
            client.sendall(b"ping")
            reply = client.recv(100)
        stdout, _ = child.communicate(timeout=RECEIVE_TIMEOUT_S)
        report = json.loads(stdout)

        assert child.returncode == 0
        assert reply == b"pong"
        assert report["request"] == "ping"
        assert report["names"] == ["control"]
        assert report["inheritable"] == [False]
        assert report["environment"] == []

    def test_listen_fds_other_pid_ignored(self, tmp_path: Path) -> None:
        """Sockets meant for the parent (LISTEN_PID is not ours) are left alone."""
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / "control.sock"))
        server.listen()
        env = child_env(LISTEN_FDS="1")

        child = run_child(server.fileno(), str(os.getpid()), env)
        server.close()
        stdout, _ = child.communicate(timeout=RECEIVE_TIMEOUT_S)
        report = json.loads(stdout)

        assert child.returncode == 0
        assert report["names"] == []
        assert report["environment"] == []

    def test_listen_fds_pipe_rejected(self) -> None:
        read_end, write_end = os.pipe()
        env = child_env(LISTEN_FDS="1")

        child = run_child(read_end, "self", env)
        os.close(read_end)
        os.close(write_end)
        stdout, _ = child.communicate(timeout=RECEIVE_TIMEOUT_S)
        report = json.loads(stdout)

        assert child.returncode == 0
        assert "file descriptor 3 ('unknown')" in report["error"]
        assert "is not a socket" in report["error"]

    def test_listen_fds_unset_returns_empty(self) -> None:
        environ: dict[str, str] = {}

        assert listen_fds(environ) == []

    @pytest.mark.parametrize(
        ("listen_fds_value", "fdnames", "message"),
        [
            ("two", "", r"LISTEN_FDS='two' is invalid"),
            ("-1", "", r"LISTEN_FDS='-1' is invalid"),
            ("2", "control", r"LISTEN_FDNAMES='control' has 1 names but LISTEN_FDS=2"),
        ],
    )
    def test_listen_fds_malformed_environment(
        self, listen_fds_value: str, fdnames: str, message: str
    ) -> None:
        environ = {
            "LISTEN_PID": str(os.getpid()),
            "LISTEN_FDS": listen_fds_value,
            "LISTEN_FDNAMES": fdnames,
        }

        with pytest.raises(SocketActivationError, match=message):
            listen_fds(environ)

        assert environ == {}

    def test_listen_fds_keeps_environment_on_request(self) -> None:
        environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}

        assert listen_fds(environ, unset_environment=False) == []

        assert environ == {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
