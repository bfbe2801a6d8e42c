"""Probe throughput: the core's batch probe next to ffprobe, mediainfo and pymediainfo.

Every peer reads the same hard-linked files, in the same order, after one
untimed pass has put them in the page cache. Bytes read per file come from
this process's ``rchar`` counter, which includes the reaped ffprobe and
mediainfo processes, so all peers are counted the same way; the core's own
``bytes_read`` is recorded beside it as a check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import rchar, say, summarize

import reelwatch._core as core

__all__ = ["run_probe_part"]

# A peer returns how many files it read successfully, or None when the tool
# gives no per-file verdict.
Peer = Callable[[list[str]], int | None]

GOALS = {"ffprobe": 100.0, "pymediainfo": 10.0}


def run_probe_part(files: Sequence[Path], runs: int) -> dict[str, Any]:
    """Measure every available peer ``runs`` times on ``files`` and compare."""
    paths = [str(path) for path in files]
    peers, skipped = _available_peers()
    core.probe_many(paths)  # warms the page cache for every peer

    samples: dict[str, list[tuple[float, float, int | None]]] = {
        name: [] for name in peers
    }
    for run in range(runs):
        for name, peer in peers.items():
            samples[name].append(_measure(peer, paths))
            files_per_s = len(paths) / samples[name][-1][0]
            say(f"  probe run {run + 1}/{runs}: {name:<22} {files_per_s:10.1f} files/s")

    results = {
        name: _peer_result(values, len(paths)) for name, values in samples.items()
    }
    core_reported = core.probe_many(paths)
    core_bytes = sum(r.bytes_read or 0 for r in core_reported) / len(paths)
    results["core"]["core_reported_bytes_per_file"] = core_bytes
    return {
        "files": len(paths),
        "distinct_sources": len({os.stat(p).st_ino for p in paths}),
        "mean_file_bytes": sum(os.path.getsize(p) for p in paths) / len(paths),
        "peers": results,
        "skipped_peers": skipped,
        "ratios": _ratios(results),
        "parallel_processes": os.cpu_count() or 1,
    }


def _measure(peer: Peer, paths: list[str]) -> tuple[float, float, int | None]:
    read_before = rchar()
    started = time.perf_counter()
    succeeded = peer(paths)
    elapsed = time.perf_counter() - started
    bytes_per_file = (rchar() - read_before) / len(paths)
    return elapsed, bytes_per_file, succeeded


def _peer_result(
    samples: list[tuple[float, float, int | None]], count: int
) -> dict[str, Any]:
    return {
        "files_per_s": summarize([count / elapsed for elapsed, _, _ in samples]),
        "bytes_per_file": summarize([read for _, read, _ in samples]),
        "succeeded": samples[-1][2],
    }


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    core_rate = results["core"]["files_per_s"]["median"]
    ratios = {}
    for name, result in results.items():
        if name == "core":
            continue
        ratio = core_rate / result["files_per_s"]["median"]
        goal = GOALS.get(name)
        ratios[name] = {
            "ratio": ratio,
            "goal": goal,
            "met": None if goal is None else ratio >= goal,
        }
    return ratios


def _available_peers() -> tuple[dict[str, Peer], dict[str, str]]:
    peers: dict[str, Peer] = {
        "core": _probe_core,
        "core (1 thread)": _probe_core_one_thread,
    }
    skipped = {}
    if shutil.which("ffprobe"):
        peers["ffprobe"] = _probe_ffprobe
    else:
        skipped["ffprobe"] = "ffprobe is not on PATH (apt-get install ffmpeg)"
    if shutil.which("mediainfo"):
        peers["mediainfo"] = _probe_mediainfo
    else:
        skipped["mediainfo"] = "mediainfo is not on PATH (apt-get install mediainfo)"
    try:
        import pymediainfo  # noqa: F401
    except ImportError as exc:
        skipped["pymediainfo"] = f"pymediainfo cannot be imported: {exc}"
    else:
        peers["pymediainfo"] = _probe_pymediainfo
    return peers, skipped


def tool_versions() -> dict[str, str]:
    """Return the version line of each peer tool that is installed."""
    versions = {"reelwatch core": core.__version__}
    for tool, flag in (("ffprobe", "-version"), ("mediainfo", "--Version")):
        if shutil.which(tool):
            output = subprocess.run(
                [tool, flag], capture_output=True, text=True, check=False
            ).stdout
            versions[tool] = " ".join(output.split()[:4])
    try:
        versions["pymediainfo"] = metadata.version("pymediainfo")
    except metadata.PackageNotFoundError:
        pass
    return versions


def _probe_core(paths: list[str]) -> int:
    return sum(result.ok for result in core.probe_many(paths))


def _probe_core_one_thread(paths: list[str]) -> int:
    return sum(result.ok for result in core.probe_many(paths, threads=1))


def _probe_ffprobe(paths: list[str]) -> int:
    # One process per file, as a script that shells out does; as many at once
    # as there are cores, since the core uses them all too.
    def one(path: str) -> bool:
        completed = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json"]
            + ["-show_format", "-show_streams", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return completed.returncode == 0

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return sum(pool.map(one, paths))


def _probe_mediainfo(paths: list[str]) -> None:
    # All paths in one process; mediainfo's exit status covers the whole list.
    subprocess.run(
        ["mediainfo", "--Output=JSON", *paths],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return None


def _probe_pymediainfo(paths: list[str]) -> int:
    from pymediainfo import MediaInfo

    succeeded = 0
    for path in paths:
        info = MediaInfo.parse(path)
        succeeded += any(track.track_type == "Video" for track in info.tracks)
    return succeeded
