"""Start the real daemon as a child process on a temporary root, and talk to it.

Tests that need the whole program (watcher, queue, Rust core, SQLite file and
Unix socket together) use :class:`DaemonProcess` instead of in-process doubles.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["DaemonProcess", "RpcFailure", "running_daemon", "wait_until"]

_ids = itertools.count(1)


class RpcFailure(Exception):
    """The daemon returned a JSON-RPC error object."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.error = dict(error)


def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


class DaemonProcess:
    """A `reelwatch serve` child process with its own config, state and socket."""

    def __init__(
        self,
        workdir: Path,
        roots: Sequence[Path],
        *,
        extra_config: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.roots = list(roots)
        self.state_dir = workdir / "state"
        # Unix socket paths are limited to 107 bytes, so keep it short.
        self.socket_path = workdir / "rw.sock"
        self.config_path = workdir / "reelwatch.toml"
        self.log_path = workdir / "daemon.log"
        self.extra_config = extra_config
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        roots = ", ".join(json.dumps(str(root)) for root in self.roots)
        self.config_path.write_text(
            f"allowed_scan_roots = [{roots}]\n"
            f"state_dir = {json.dumps(str(self.state_dir))}\n"
            f"socket_path = {json.dumps(str(self.socket_path))}\n"
            'log_format = "json"\n'
            'log_level = "debug"\n' + self.extra_config,
            encoding="utf-8",
        )

    def start(self, *, wait: bool = True) -> None:
        """Start the daemon and, with ``wait``, block until it replies to ``status``."""
        if not self.config_path.exists():
            self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELWATCH_")}
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reelwatch",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        if wait:
            wait_until(self.is_answering, timeout_s=30, what="the daemon's socket")

    def is_answering(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            status = self.process.returncode
            raise AssertionError(f"daemon exited with {status}:\n{self.log_tail()}")
        try:
            self.call("status")
        except OSError:
            return False
        return True

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request on a new connection and return its result."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
        if params is not None:
            request["params"] = dict(params)
        reply = self.exchange(json.dumps(request).encode() + b"\n")
        message = json.loads(reply)
        if "error" in message:
            raise RpcFailure(message["error"])
        return message["result"]

    def exchange(self, data: bytes, *, timeout_s: float = 10.0) -> bytes:
        """Send raw bytes and return the first reply line, without its newline."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.socket_path))
            sock.sendall(data)
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        return buffer.rstrip(b"\n")

    def wait_idle(self, *, timeout_s: float = 60.0) -> dict[str, Any]:
        """Block until ``status.idle`` is true and return that status."""
        last: dict[str, Any] = {}

        def idle() -> bool:
            nonlocal last
            last = self.call("status")
            return bool(last["idle"])

        wait_until(idle, timeout_s=timeout_s, what="status.idle", step_s=0.1)
        return last

    def videos(self, **params: Any) -> list[dict[str, Any]]:
        """Return every catalog entry, following ``next_cursor`` across pages."""
        videos: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.call("videos.list", {**params, "cursor": cursor, "limit": 500})
            videos.extend(page["videos"])
            cursor = page["next_cursor"]
            if cursor is None:
                return videos

    def stop(self, sig: int = signal.SIGTERM, *, timeout_s: float = 30.0) -> int:
        """Send ``sig`` to the daemon (by its PID) and return its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"daemon ignored {sig!r}:\n{self.log_tail()}"
                ) from None
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_daemon(
    workdir: Path, roots: Sequence[Path], **kwargs: Any
) -> Iterator[DaemonProcess]:
    """Run a daemon for the duration of the block; it is stopped (by PID) afterwards."""
    daemon = DaemonProcess(workdir, roots, **kwargs)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
