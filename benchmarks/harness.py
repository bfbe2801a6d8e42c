"""Shared pieces of the benchmark suite: statistics, /proc readers, the daemon wrapper.

The daemon is started through ``tests/daemon_process.py`` (the same helper the
end-to-end tests use), with logging at ``info`` so that per-file debug lines do
not slow the figures down.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO / "tests"))

from daemon_process import DaemonProcess, RpcFailure  # noqa: E402

__all__ = [
    "OUT_DIR",
    "REPO",
    "BenchDaemon",
    "RpcConnection",
    "RpcFailure",
    "cpu_seconds",
    "free_disk_bytes",
    "open_fds",
    "percentile",
    "rchar",
    "rss_bytes",
    "save_log_on_error",
    "say",
    "summarize",
    "thread_cpu_seconds",
    "wait_for",
    "workspace",
]

_ids = itertools.count(1)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    """Write one progress line to stdout; the suite's output is its report."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the value at ``fraction`` (0..1) of the sorted values, by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Return the median of repeated runs with their minimum, maximum and count."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def wait_for(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, step_s: float
) -> float:
    """Poll ``predicate`` until it is true and return the perf_counter time of that.

    Raises:
        TimeoutError: ``predicate`` stayed false for ``timeout_s`` seconds.
    """
    deadline = time.perf_counter() + timeout_s
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


def rchar() -> int:
    """Return the bytes this process and its reaped children read through syscalls.

    The kernel adds a child's I/O counters to its parent when the parent
    reaps it, so this also counts ffprobe and mediainfo runs that have ended.
    """
    return _proc_io(os.getpid())["rchar"]


def _proc_io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        return {key: int(value) for key, value in (line.split(":") for line in io)}


def rss_bytes(pid: int) -> int:
    """Return the resident set size of process ``pid`` (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def open_fds(pid: int) -> int:
    """Return the number of open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """Return user plus system CPU time of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may contain spaces; the fields after it do not.
        fields = stat.read().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """Return the CPU time of each thread of ``pid``, keyed ``"TID name"``."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8") as stat:
                head, _, tail = stat.read().rpartition(")")
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
        fields = tail.split()
        name = head.partition("(")[2]
        threads[f"{tid} {name}"] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return threads


def free_disk_bytes(path: Path) -> int:
    """Return the bytes available to this user on the filesystem of ``path``."""
    return shutil.disk_usage(path).free


@contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """Create a temporary folder and remove it, whatever happens, at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class BenchDaemon(DaemonProcess):
    """The real daemon on a temporary state folder, logging at ``info``.

    ``scan_options`` become lines of the ``[scan]`` table of its configuration.
    """

    def __init__(
        self,
        workdir: Path,
        roots: Sequence[Path],
        *,
        scan_options: Mapping[str, Any] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, roots)
        self.scan_options = dict(scan_options or {})

    def write_config(self) -> None:
        roots = ", ".join(json.dumps(str(root)) for root in self.roots)
        lines = [
            f"allowed_scan_roots = [{roots}]",
            f"state_dir = {json.dumps(str(self.state_dir))}",
            f"socket_path = {json.dumps(str(self.socket_path))}",
            'log_format = "json"',
            'log_level = "info"',
        ]
        if self.scan_options:
            lines.append("[scan]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in self.scan_options.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        if self.process is None:
            raise RuntimeError("the daemon has not been started")
        pid: int = self.process.pid
        return pid

    def start_timed(self) -> float:
        """Start the daemon without waiting and return the perf_counter time of it."""
        started = time.perf_counter()
        self.start(wait=False)
        return started

    def wait_answering(self, *, timeout_s: float = 60.0) -> float:
        """Wait until ``status`` gets a reply; return the perf_counter time of that."""
        return wait_for(
            self.is_answering,
            timeout_s=timeout_s,
            what="the daemon socket",
            step_s=0.01,
        )


@contextmanager
def save_log_on_error(daemon: DaemonProcess, name: str) -> Iterator[None]:
    """Copy the daemon's log to ``benchmarks/out/logs/NAME.log`` if the block fails.

    The temporary tree with the original log is removed at exit.
    """
    try:
        yield
    except BaseException:
        logs = OUT_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if daemon.log_path.exists():
            shutil.copyfile(daemon.log_path, logs / f"{name}.log")
            say(f"the daemon log is saved as {logs / (name + '.log')}")
        raise


class RpcConnection:
    """One persistent connection to the daemon, for requests in a tight loop."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        self._sock.connect(str(socket_path))
        self._buffer = b""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its result.

        Raises:
            RpcFailure: the daemon returned an error object.
            ConnectionError: the daemon closed the connection.
        """
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
        if params is not None:
            request["params"] = dict(params)
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"the daemon closed the connection on {method}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        if "error" in message:
            raise RpcFailure(message["error"])
        return message["result"]

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> RpcConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
