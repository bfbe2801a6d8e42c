"""Soak test: file churn and client load for N minutes, then resources and correctness.

Usage: ``python benchmarks/soak.py --minutes N [--files F] [--clients C]``.
Not part of ``make bench``. Writes ``benchmarks/out/soak.json`` and, unless
``--no-docs``, the soak section of ``docs/benchmarks.md``.

While the churn runs, new files are written (so they must settle first),
renamed inside the library, moved out of it and deleted. Meanwhile clients
call ``status`` and ``videos.list``, each on its own connection. Every action and
request loop is bounded by the deadline. At the end the churn stops, the
daemon is given time to go idle, and its full listing is compared with the
video files on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import media
import report
from harness import (
    OUT_DIR,
    BenchDaemon,
    RpcConnection,
    cpu_seconds,
    open_fds,
    rss_bytes,
    say,
    wait_for,
    workspace,
)
from run import machine_info

_SAMPLE_EVERY_S = 10.0
_ACTION_PAUSE_S = 0.02
_CLIENT_PAUSE_S = 0.01
_FINAL_IDLE_TIMEOUT_S = 600.0
SOAK_BEGIN = "<!-- soak:begin (written by benchmarks/soak.py) -->"
SOAK_END = "<!-- soak:end -->"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak test and report memory, descriptors and catalog correctness."""
    args = _parse_args(argv)
    sources = media.media_files(
        [
            folder
            for folder in (
                media.ensure_clips(OUT_DIR / "clips"),
                media.corpus_media_dir(),
            )
            if folder is not None
        ]
    )
    videos = media.complete_videos(sources)
    if not videos:
        raise SystemExit("no media: the corpus and the generated clips are missing")

    with workspace("reelwatch-soak-") as temp:
        temp = temp.resolve()
        result = _soak(temp, videos, args)
    result["machine"] = machine_info()
    result["command"] = "python benchmarks/soak.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "soak.json").write_text(
        json.dumps(result, indent=2, sort_keys=True), encoding="utf-8"
    )
    for line in render(result):
        say(line)
    if not args.no_docs:
        _update_docs(result)
        say("soak section of docs/benchmarks.md regenerated")
    correct = result["missing"] == result["unexpected"] == result["duplicates"] == 0
    return 0 if correct else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="churn duration (default 10)"
    )
    parser.add_argument(
        "--files", type=int, default=5000, help="library size at start (default 5000)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent socket clients (default 4)"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not touch docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.files < 1 or args.clients < 0:
        parser.error("--minutes and --files must be positive, --clients at least 0")
    return args


def _soak(temp: Path, videos: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    copies = media.copy_sources(videos, temp / "sources")
    root = temp / "library"
    media.build_library(
        root, copies, files=args.files, folders=max(1, args.files // 20)
    )
    outside = temp / "outside"
    outside.mkdir()
    churn = _Churn(root, outside, min(copies, key=lambda p: p.stat().st_size))

    daemon = BenchDaemon(temp / "daemon", [root])
    try:
        daemon.start()
        with RpcConnection(daemon.socket_path) as rpc:
            wait_for(
                lambda: _is_idle_with(rpc, args.files),
                timeout_s=_FINAL_IDLE_TIMEOUT_S,
                what="the first index",
                step_s=0.1,
            )
        return _churn_and_check(daemon, root, churn, args)
    finally:
        daemon.stop()


def _churn_and_check(
    daemon: BenchDaemon, root: Path, churn: _Churn, args: argparse.Namespace
) -> dict[str, Any]:
    pid = daemon.pid
    deadline = time.monotonic() + args.minutes * 60
    stop = threading.Event()
    requests = Counter[str]()
    clients = [
        threading.Thread(target=_client, args=(daemon, stop, requests), daemon=True)
        for _ in range(args.clients)
    ]
    for client in clients:
        client.start()

    samples = []
    started = time.monotonic()
    next_sample = started
    cpu_start = cpu_seconds(pid)
    try:
        while time.monotonic() < deadline:
            churn.step()
            if time.monotonic() >= next_sample:
                samples.append(_sample(pid, started))
                next_sample += _SAMPLE_EVERY_S
            time.sleep(_ACTION_PAUSE_S)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
    churn_cpu_s = cpu_seconds(pid) - cpu_start

    expected = churn.video_files()
    settle_started = time.monotonic()
    with RpcConnection(daemon.socket_path) as rpc:
        wait_for(
            lambda: _is_idle_with(rpc, len(expected)),
            timeout_s=_FINAL_IDLE_TIMEOUT_S,
            what=f"idle with {len(expected)} videos",
            step_s=0.1,
        )
    settle_s = time.monotonic() - settle_started
    samples.append(_sample(pid, started))

    listed = [video["path"] for video in daemon.videos()]
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "initial_files": args.files,
        "final_files": len(expected),
        "actions": dict(churn.actions),
        "requests": dict(requests),
        "churn_cpu_s": churn_cpu_s,
        "settle_after_churn_s": settle_s,
        "samples": samples,
        "missing": len(expected - set(listed)),
        "unexpected": len(set(listed) - expected),
        "duplicates": sum(n - 1 for n in Counter(listed).values() if n > 1),
    }


def _is_idle_with(rpc: RpcConnection, videos: int) -> bool:
    status = rpc.call("status")
    return bool(status["idle"]) and status["videos"] == videos


def _sample(pid: int, started: float) -> dict[str, float]:
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mib": rss_bytes(pid) / 1024**2,
        "open_fds": open_fds(pid),
        "cpu_s": cpu_seconds(pid),
    }


def _client(daemon: BenchDaemon, stop: threading.Event, requests: Counter[str]) -> None:
    with RpcConnection(daemon.socket_path) as rpc:
        while not stop.is_set():
            rpc.call("status")
            rpc.call("videos.list", {"limit": 100})
            requests["status"] += 1
            requests["videos.list"] += 1
            stop.wait(_CLIENT_PAUSE_S)


class _Churn:
    """Random file operations inside the library, and the list of files on disk.

    New files are written in place, so their mtime is new and the daemon
    waits for them to settle. Renames and moves keep the inode.
    """

    def __init__(self, root: Path, outside: Path, clip: Path) -> None:
        self._root = root
        self._outside = outside
        self._data = clip.read_bytes()
        self._suffix = clip.suffix
        self._churn_dir = root / "churn"
        self._churn_dir.mkdir()
        self._random = random.Random(8)
        self._counter = 0
        self._folders = sorted(p for p in root.iterdir() if p.is_dir())
        self.actions = Counter[str]()

    def step(self) -> None:
        """Do one random action."""
        action = self._random.choice(
            ["create", "create", "rename", "move_out", "delete", "move_in"]
        )
        getattr(self, f"_{action}")()
        self.actions[action] += 1

    def _new_name(self) -> str:
        self._counter += 1
        return f"c{self._counter:07d}{self._suffix}"

    def _create(self) -> None:
        folder = self._random.choice([*self._folders, self._churn_dir])
        (folder / self._new_name()).write_bytes(self._data)

    def _pick(self, folder: Path) -> Path | None:
        with os.scandir(folder) as entries:
            files = [Path(entry.path) for entry in entries if entry.is_file()]
        return self._random.choice(files) if files else None

    def _rename(self) -> None:
        source = self._pick(self._random.choice(self._folders))
        if source is not None:
            source.rename(self._churn_dir / self._new_name())

    def _move_out(self) -> None:
        source = self._pick(self._random.choice(self._folders))
        if source is not None:
            source.rename(self._outside / self._new_name())

    def _move_in(self) -> None:
        source = self._pick(self._outside)
        if source is not None:
            source.rename(self._random.choice(self._folders) / self._new_name())

    def _delete(self) -> None:
        source = self._pick(self._churn_dir)
        if source is not None:
            source.unlink()

    def video_files(self) -> set[str]:
        """List the video files now under the library root."""
        found = set()
        for folder, _, names in os.walk(self._root):
            for name in names:
                if media.has_video_extension(Path(name)):
                    found.add(os.path.join(folder, name))
        return found


def render(result: dict[str, Any]) -> list[str]:
    """Render the soak result as Markdown lines."""
    first, last = result["samples"][0], result["samples"][-1]
    peak_rss = max(sample["rss_mib"] for sample in result["samples"])
    peak_fds = max(sample["open_fds"] for sample in result["samples"])
    actions = ", ".join(f"{n} {name}" for name, n in sorted(result["actions"].items()))
    requests = sum(result["requests"].values())
    machine = result["machine"]
    return [
        f"Measured {machine['date']} on {machine['nproc']} cores "
        f"({machine['cpu_model']}), with `{result['command']}`.",
        "",
        "| Figure | Value |",
        "| --- | --- |",
        f"| churn | {result['minutes']:g} min on a library of "
        f"{result['initial_files']:,} files: {actions} |",
        f"| client requests | {requests:,} by {result['clients']} clients |",
        f"| resident memory first / peak / last, MiB | {first['rss_mib']:.0f} / "
        f"{peak_rss:.0f} / {last['rss_mib']:.0f} |",
        f"| open file descriptors first / peak / last | {first['open_fds']} / "
        f"{peak_fds} / {last['open_fds']} |",
        f"| daemon CPU during the churn, s | {result['churn_cpu_s']:.1f} |",
        f"| idle again after the churn stopped, s | "
        f"{result['settle_after_churn_s']:.1f} |",
        f"| catalog vs disk: files / missing / unexpected / doubled | "
        f"{result['final_files']:,} / {result['missing']} / {result['unexpected']} / "
        f"{result['duplicates']} |",
    ]


def _update_docs(result: dict[str, Any]) -> None:
    doc = report.DOC
    section = "\n".join([SOAK_BEGIN, "", *render(result), "", SOAK_END])
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    head, begin, rest = text.partition(SOAK_BEGIN)
    if not begin:
        doc.write_text(text.rstrip("\n") + "\n\n## Soak\n\n" + section + "\n")
        return
    _, _, tail = rest.partition(SOAK_END)
    doc.write_text(head + section + tail, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
