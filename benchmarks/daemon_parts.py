"""The daemon at library scale: first index, re-check, resources, events, burst.

One :class:`Library` is built per suite run and shared by the parts. The
parts run in order on one daemon: first index (fresh state), resources while
it watches, restart and rescan of the unchanged tree, single renames, then a
burst. Each part leaves the tree and the catalog as it found them.
"""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floor import find_stat, read_tree
from harness import (
    BenchDaemon,
    RpcConnection,
    RpcFailure,
    cpu_seconds,
    open_fds,
    percentile,
    rss_bytes,
    save_log_on_error,
    say,
    thread_cpu_seconds,
    wait_for,
)

__all__ = ["Library", "run_daemon_parts"]

# JSON-RPC "method not found": the daemon predates the method.
_METHOD_NOT_FOUND = -32601
_INDEX_TIMEOUT_S = 3600.0
_SETTLE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Library:
    """The watched tree and the files the event parts move into it.

    ``events_dir`` and ``burst_dir`` are empty folders inside ``root``;
    ``event_files`` and ``burst_files`` lie outside it, on the same filesystem,
    each its own inode.
    """

    root: Path
    files: int
    folders: int
    events_dir: Path
    burst_dir: Path
    event_files: list[Path]
    burst_files: list[Path]


@dataclass(frozen=True)
class Sizes:
    """How much each part does; ``--quick`` shrinks all of them."""

    idle_window_s: float
    renames: int
    burst: int


def run_daemon_parts(
    library: Library, workdir: Path, sizes: Sizes, run: int, only: set[str]
) -> dict[str, Any]:
    """Run the selected daemon parts once, on a fresh state folder."""
    results: dict[str, Any] = {}
    daemon = BenchDaemon(workdir / f"daemon-{run}", [library.root])
    with save_log_on_error(daemon, f"daemon-{run}"):
        try:
            _run_parts(daemon, library, sizes, only, results)
        finally:
            daemon.stop()
    return results


def _run_parts(
    daemon: BenchDaemon,
    library: Library,
    sizes: Sizes,
    only: set[str],
    results: dict[str, Any],
) -> None:
    results["index"] = _first_index(daemon, library)
    if "resources" in only:
        results["resources"] = _idle_resources(daemon, sizes.idle_window_s)
    if "recheck" in only:
        results["recheck"] = _recheck(daemon, library)
    if "events" in only:
        results["events"] = _events(daemon, library, sizes.renames)
    if "burst" in only:
        results["burst"] = _burst(daemon, library, sizes.burst)


def _first_index(daemon: BenchDaemon, library: Library) -> dict[str, Any]:
    floor_files, floor_s = read_tree(library.root)
    say(f"  floor: read {floor_files} files in {floor_s:.2f} s")

    started = daemon.start_timed()
    answering = daemon.wait_answering()
    with RpcConnection(daemon.socket_path) as rpc:
        finished = _wait_idle(rpc, videos=library.files, timeout_s=_INDEX_TIMEOUT_S)
        status = rpc.call("status")
    elapsed = finished - started
    say(
        f"  first index: {status['videos']} videos in {elapsed:.2f} s "
        f"({library.files / elapsed:.0f} files/s; floor {floor_s:.2f} s)"
    )
    return {
        "files": library.files,
        "folders": library.folders,
        "seconds": elapsed,
        "socket_ready_s": answering - started,
        "files_per_s": library.files / elapsed,
        "floor_seconds": floor_s,
        "floor_files": floor_files,
        "ratio_to_floor": elapsed / floor_s,
        "rss_bytes": rss_bytes(daemon.pid),
        "open_fds": open_fds(daemon.pid),
        "videos": status["videos"],
    }


def _idle_resources(daemon: BenchDaemon, window_s: float) -> dict[str, Any]:
    pid = daemon.pid
    cpu_before = cpu_seconds(pid)
    threads_before = thread_cpu_seconds(pid)
    time.sleep(window_s)
    cpu_used = cpu_seconds(pid) - cpu_before
    threads_after = thread_cpu_seconds(pid)
    percent = 100.0 * cpu_used / window_s
    say(f"  idle: {cpu_used * 1000:.0f} ms CPU in {window_s:.0f} s ({percent:.3f} %)")
    # Which threads used the idle CPU: the event loop, the watcher, SQLite.
    by_thread_ms = {
        name: round((seconds - threads_before.get(name, 0.0)) * 1000)
        for name, seconds in threads_after.items()
        if seconds > threads_before.get(name, 0.0)
    }
    # The rest was used by threads that ended within the window. Ticks are
    # 10 ms, so the rounded sums can differ by a tick; that is not counted.
    ended_ms = round(cpu_used * 1000) - sum(by_thread_ms.values())
    by_thread_ms["ended threads"] = max(0, ended_ms)
    return {
        "idle_cpu_ms_by_thread": by_thread_ms,
        "rss_bytes": rss_bytes(pid),
        "open_fds": open_fds(pid),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "idle_window_s": window_s,
        "idle_cpu_s": cpu_used,
        "idle_cpu_percent": percent,
    }


def _recheck(daemon: BenchDaemon, library: Library) -> dict[str, Any]:
    find_lines, find_s = find_stat(library.root)
    daemon.stop()

    restart_wall = time.time()
    started = daemon.start_timed()
    answering = daemon.wait_answering()
    with RpcConnection(daemon.socket_path) as rpc:
        finished = _wait_idle(rpc, videos=library.files, timeout_s=_INDEX_TIMEOUT_S)
        restart_probes = _probes_since(rpc, restart_wall, counter_before=0)

        rescan_wall = time.time()
        counter_before = rpc.call("status").get("probes")
        rescan_started = time.perf_counter()
        method = _request_rescan(rpc, library.root)
        rescan_finished = _wait_idle(rpc, videos=library.files, timeout_s=600)
        rescan_probes = _probes_since(rpc, rescan_wall, counter_before=counter_before)

    restart_s = finished - started
    rescan_s = rescan_finished - rescan_started
    say(
        f"  restart to idle {restart_s:.2f} s ({restart_probes} probes), "
        f"{method} {rescan_s:.2f} s ({rescan_probes} probes), find {find_s:.2f} s"
    )
    return {
        "find_seconds": find_s,
        "find_lines": find_lines,
        "restart_seconds": restart_s,
        "restart_socket_ready_s": answering - started,
        "restart_probes": restart_probes,
        "rescan_method": method,
        "rescan_seconds": rescan_s,
        "rescan_probes": rescan_probes,
        "restart_ratio_to_find": restart_s / find_s,
        "rescan_ratio_to_find": rescan_s / find_s,
        "restart_rss_bytes": rss_bytes(daemon.pid),
    }


def _request_rescan(rpc: RpcConnection, root: Path) -> str:
    try:
        rpc.call("rescan", {})
    except RpcFailure as failure:
        if failure.code != _METHOD_NOT_FOUND:
            raise
        rpc.call("scan", {"path": str(root)})
        return "scan"
    return "rescan"


def _probes_since(
    rpc: RpcConnection, since_wall: float, *, counter_before: int | None
) -> int:
    """Count the probes since ``counter_before`` or, lacking it, since ``since_wall``.

    The daemon's ``status.probes`` counts the probes since it started. A
    daemon without that counter is asked for its scan jobs created after
    ``since_wall``: each one probed every file it found except those it
    skipped as unchanged.
    """
    counter = rpc.call("status").get("probes")
    if counter is not None and counter_before is not None:
        return int(counter) - counter_before
    jobs = rpc.call("jobs.list", {"status": "complete", "limit": 1000})["jobs"]
    probes = 0
    for job in jobs:
        result = job.get("result") or {}
        if job["created_at"] >= since_wall - 1.0 and "scanned" in result:
            probes += result.get("probed", result["scanned"] - result["skipped"])
    return probes


def _events(daemon: BenchDaemon, library: Library, count: int) -> dict[str, Any]:
    """Rename files one by one into a watched folder; time each until it is listed."""
    watcher = _InotifyWatcher(library.events_dir)
    catalog_ms = []
    inotify_ms = []
    try:
        with RpcConnection(daemon.socket_path) as rpc:
            for source in library.event_files[:count]:
                target = library.events_dir / source.name
                renamed = time.perf_counter()
                os.rename(source, target)
                listed = wait_for(
                    functools.partial(_is_listed, rpc, target),
                    timeout_s=60,
                    what=f"{target} in videos.list",
                    step_s=0.001,
                )
                reported = watcher.wait_for(target.name, timeout_s=10)
                catalog_ms.append((listed - renamed) * 1000)
                inotify_ms.append((reported - renamed) * 1000)
    finally:
        watcher.close()
        for source in library.event_files[:count]:
            target = library.events_dir / source.name
            if target.exists():
                os.rename(target, source)
    with RpcConnection(daemon.socket_path) as rpc:
        _wait_idle(rpc, videos=library.files, timeout_s=_SETTLE_TIMEOUT_S)

    catalog = _latency_summary(catalog_ms)
    floor = _latency_summary(inotify_ms)
    say(
        f"  event to catalog: median {catalog['median']:.1f} ms, "
        f"p99 {catalog['p99']:.1f} ms; inotifywait p99 {floor['p99']:.2f} ms"
    )
    return {
        "renames": count,
        "catalog_ms": catalog,
        "inotifywait_ms": floor,
        "p99_gap_ms": catalog["p99"] - floor["p99"],
        "catalog_samples_ms": catalog_ms,
        "inotifywait_samples_ms": inotify_ms,
    }


def _is_listed(rpc: RpcConnection, path: Path) -> bool:
    page = rpc.call("videos.list", {"under": str(path), "limit": 1})
    return bool(page["videos"])


def _latency_summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "median": percentile(samples_ms, 0.5),
        "p99": percentile(samples_ms, 0.99),
        "max": max(samples_ms),
    }


def _burst(daemon: BenchDaemon, library: Library, count: int) -> dict[str, Any]:
    """Create ``count`` hard links at once; time until the catalog lists them all."""
    pid = daemon.pid
    rss_before = rss_bytes(pid)
    targets = [
        library.burst_dir / source.name for source in library.burst_files[:count]
    ]
    expected = {str(target) for target in targets}
    with RpcConnection(daemon.socket_path) as rpc:
        started = time.perf_counter()
        for source, target in zip(library.burst_files, targets, strict=False):
            os.link(source, target)
        created = time.perf_counter()
        finished = _wait_idle(
            rpc, videos=library.files + count, timeout_s=_SETTLE_TIMEOUT_S
        )
    listed = [video["path"] for video in daemon.videos(under=str(library.burst_dir))]
    rss_after = rss_bytes(pid)

    duplicates = sum(n - 1 for n in Counter(listed).values() if n > 1)
    missing = len(expected - set(listed))
    unexpected = len(set(listed) - expected)

    removal_started = time.perf_counter()
    for target in targets:
        target.unlink()
    with RpcConnection(daemon.socket_path) as rpc:
        removal_finished = _wait_idle(
            rpc, videos=library.files, timeout_s=_SETTLE_TIMEOUT_S
        )
    rss_after_removal = rss_bytes(pid)

    elapsed = finished - started
    say(
        f"  burst: {count} files listed {elapsed:.2f} s after the first link "
        f"({missing} missing, {duplicates} doubled, {unexpected} unexpected)"
    )
    return {
        "files": count,
        "create_seconds": created - started,
        "seconds": elapsed,
        "files_per_s": count / elapsed,
        "missing": missing,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "removal_seconds": removal_finished - removal_started,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_after_removal_bytes": rss_after_removal,
        "open_fds_after": open_fds(pid),
    }


def _wait_idle(rpc: RpcConnection, *, videos: int, timeout_s: float) -> float:
    """Wait until the daemon is idle with ``videos`` entries; return when it was."""

    def is_done() -> bool:
        status = rpc.call("status")
        return bool(status["idle"]) and status["videos"] == videos

    return wait_for(
        is_done, timeout_s=timeout_s, what=f"idle with {videos} videos", step_s=0.02
    )


class _InotifyWatcher:
    """``inotifywait -m`` on one folder, with the arrival time of each line.

    inotifywait flushes a line per event; the reader thread stamps each line
    as it arrives, which adds only the pipe's latency to the kernel's.
    """

    def __init__(self, folder: Path) -> None:
        self._process = subprocess.Popen(
            ["inotifywait", "-m", "-e", "moved_to", "--format", "%f", str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._seen: dict[str, float] = {}
        self._arrivals: queue.Queue[None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # inotifywait writes "Watches established." to stderr once it watches.
        assert self._process.stderr is not None
        for line in self._process.stderr:
            if b"established" in line:
                break

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._seen[line.rstrip(b"\n").decode()] = time.perf_counter()
            self._arrivals.put(None)

    def wait_for(self, name: str, *, timeout_s: float) -> float:
        """Return the arrival time of ``name``'s event, waiting up to ``timeout_s``.

        Raises:
            TimeoutError: no event for ``name`` arrived in time.
        """
        deadline = time.perf_counter() + timeout_s
        while name not in self._seen:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"inotifywait reported no rename of {name}")
            try:
                self._arrivals.get(timeout=remaining)
            except queue.Empty:
                continue
        return self._seen[name]

    def close(self) -> None:
        """Stop inotifywait (the process this object started) and its reader."""
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)
