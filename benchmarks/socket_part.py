"""Control socket load: requests per second and latency, during a scan and at idle.

A fresh daemon starts its first index of the library; while it runs, 1 and
then 50 clients, each on its own connection, send ``status`` or
``videos.list`` requests back to back for a fixed time. The same load is then
repeated once the daemon is idle, as the peer figure. The clients run in an
asyncio loop in this process, which shares the machine's cores with the
daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import (
    BenchDaemon,
    RpcConnection,
    percentile,
    save_log_on_error,
    say,
    wait_for,
)

__all__ = ["run_socket_part"]

CLIENT_COUNTS = (1, 50)
REQUESTS: dict[str, dict[str, Any] | None] = {
    "status": None,
    "videos.list": {"limit": 100},
}


def run_socket_part(
    root: Path, files: int, workdir: Path, phase_s: float
) -> dict[str, Any]:
    """Measure every request kind and client count during the first index, then idle."""
    daemon = BenchDaemon(workdir, [root])
    with save_log_on_error(daemon, workdir.name), _stopping(daemon):
        daemon.start(wait=False)
        daemon.wait_answering()
        during = _all_phases(daemon.socket_path, phase_s, expect_scanning=True)

        with RpcConnection(daemon.socket_path) as rpc:
            wait_for(
                lambda: _is_idle_with(rpc, files),
                timeout_s=3600,
                what="the first index",
                step_s=0.1,
            )
        idle = _all_phases(daemon.socket_path, phase_s, expect_scanning=False)
    return {"phase_seconds": phase_s, "during_scan": during, "idle": idle}


@contextlib.contextmanager
def _stopping(daemon: BenchDaemon) -> Iterator[None]:
    try:
        yield
    finally:
        daemon.stop()


def _is_idle_with(rpc: RpcConnection, files: int) -> bool:
    status = rpc.call("status")
    return bool(status["idle"]) and status["videos"] == files


def _all_phases(
    socket_path: Path, phase_s: float, *, expect_scanning: bool
) -> list[dict[str, Any]]:
    phases = []
    for method, params in REQUESTS.items():
        for clients in CLIENT_COUNTS:
            result = asyncio.run(_load(socket_path, method, params, clients, phase_s))
            with RpcConnection(socket_path) as rpc:
                result["scan_running_at_end"] = not rpc.call("status")["idle"]
            label = "during scan" if expect_scanning else "idle"
            say(
                f"  socket {label}: {method} x{clients}: "
                f"{result['requests_per_s']:.0f} req/s, "
                f"p99 {result['p99_ms']:.2f} ms"
                + ("" if result["scan_running_at_end"] == expect_scanning else " (!)")
            )
            phases.append(result)
    return phases


async def _load(
    socket_path: Path,
    method: str,
    params: dict[str, Any] | None,
    clients: int,
    phase_s: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    ids = itertools.count(1)
    deadline = time.perf_counter() + phase_s

    async def client() -> None:
        reader, writer = await asyncio.open_unix_connection(
            str(socket_path), limit=1 << 24
        )
        try:
            while time.perf_counter() < deadline:
                request: dict[str, Any] = {
                    "jsonrpc": "2.0",
                    "id": next(ids),
                    "method": method,
                }
                if params is not None:
                    request["params"] = params
                sent = time.perf_counter()
                writer.write(json.dumps(request).encode() + b"\n")
                line = await reader.readline()
                latencies.append(time.perf_counter() - sent)
                if "error" in json.loads(line):
                    raise RuntimeError(f"{method} failed under load: {line[:300]!r}")
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    samples_ms = [latency * 1000 for latency in latencies]
    return {
        "method": method,
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "median_ms": percentile(samples_ms, 0.5),
        "p99_ms": percentile(samples_ms, 0.99),
        # Keys starting with "_" are left out of results.json.
        "_samples_ms": samples_ms,
    }
