"""Run the benchmark suite: each figure next to its peer from the same run.

Usage: ``python benchmarks/run.py [--quick] [--only PART[,PART]] [--runs N]``.
Writes ``benchmarks/out/results.json`` and PNG plots; a full run (neither
``--quick`` nor ``--only``) also regenerates the figures section of
``docs/benchmarks.md`` and the plots under ``docs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import media
from daemon_parts import Library, Sizes, run_daemon_parts
from harness import OUT_DIR, REPO, free_disk_bytes, say, summarize, workspace

PARTS = ("probe", "index", "resources", "recheck", "events", "burst", "socket")
DAEMON_PARTS = {"index", "resources", "recheck", "events", "burst"}

# The temporary tree contains hard links (no data), a few thousand small copies
# and one SQLite catalog per daemon start; this leaves a wide margin.
_MIN_FREE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Plan:
    """The sizes of one suite run."""

    probe_files: int
    library_files: int
    library_folders: int
    renames: int
    burst: int
    idle_window_s: float
    socket_phase_s: float


FULL = Plan(
    probe_files=300,
    library_files=100_000,
    library_folders=5_000,
    renames=200,
    burst=10_000,
    idle_window_s=60.0,
    socket_phase_s=3.0,
)
QUICK = Plan(
    probe_files=60,
    library_files=2_000,
    library_folders=100,
    renames=20,
    burst=500,
    idle_window_s=3.0,
    socket_phase_s=0.5,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the selected parts and write the results."""
    args = _parse_args(argv)
    parts = _selected_parts(args.only)
    plan = QUICK if args.quick else FULL
    _install_requirements()
    _stop_on_sigterm()

    # Imported after the requirements, because they import matplotlib and
    # the compiled core.
    import report

    results = _run(parts, plan, args.runs)
    results["command"] = " ".join(
        ["python benchmarks/run.py"]
        + [shlex.quote(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    )
    results["quick"] = args.quick

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results_path = OUT_DIR / "results.json"
    results_path.write_text(
        json.dumps(_public(results), indent=2, sort_keys=True), encoding="utf-8"
    )
    say(f"results written to {results_path.relative_to(REPO)}")
    plots = report.write_plots(results, OUT_DIR)
    if args.quick or args.only or args.no_docs:
        say("docs/benchmarks.md left unchanged (a partial or quick run)")
    else:
        report.update_docs(results, plots)
        say("docs/benchmarks.md and docs/benchmarks/*.png regenerated")
    for line in report.goal_lines(results):
        say(line)
    return 1 if results["failures"] else 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run every part at a small size, as a smoke test",
    )
    parser.add_argument(
        "--only",
        metavar="PART[,PART]",
        help=f"run only these parts, from: {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="repeat each part this many times and report the median "
        "(default 3, or 1 with --quick)",
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="do not regenerate docs/benchmarks.md, even after a full run",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    return args


def _selected_parts(only: str | None) -> list[str]:
    if not only:
        return list(PARTS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise SystemExit(
            f"--only: unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}"
        )
    return names


def _install_requirements() -> None:
    """Install benchmarks/requirements.txt into this interpreter when missing."""
    missing = [
        name
        for name in ("matplotlib", "pymediainfo")
        if importlib.util.find_spec(name) is None
    ]
    if not missing:
        return
    say(f"installing {', '.join(missing)} from benchmarks/requirements.txt")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r"]
        + [str(REPO / "benchmarks" / "requirements.txt")],
        check=False,
    )
    if completed.returncode != 0:
        # Without matplotlib the plots are skipped, and without pymediainfo
        # its peer is. The output names what was skipped and why.
        say(f"pip failed with {completed.returncode}; going on without {missing}")


def _stop_on_sigterm() -> None:
    # SystemExit unwinds through every finally block, which stops the daemons
    # and removes the temporary tree.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _run(parts: list[str], plan: Plan, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine_info(),
        "plan": plan.__dict__,
        "runs": runs,
        "parts": {},
        "failures": {},
    }
    clips = media.ensure_clips(OUT_DIR / "clips")
    corpus = media.corpus_media_dir()
    folders = [folder for folder in (clips, corpus) if folder is not None]
    if not folders:
        raise SystemExit(
            "no media: the corpus is missing (set REELWATCH_CORPUS or place it at "
            "../shared/corpus beside the repository)"
        )
    sources = media.media_files(folders)
    results["sources"] = {"files": len(sources), "folders": [str(f) for f in folders]}

    _check_disk()
    with workspace("reelwatch-bench-") as temp:
        temp = temp.resolve()
        if "probe" in parts:
            with _recording_failure(results, ["probe"]):
                results["parts"]["probe"] = _probe(sources, temp, plan, runs)
        daemon_parts = DAEMON_PARTS.intersection(parts)
        if daemon_parts or "socket" in parts:
            library = _library(sources, temp, plan)
            if daemon_parts:
                with _recording_failure(results, ["index", *daemon_parts]):
                    results["parts"].update(
                        _daemon(library, temp, plan, runs, daemon_parts)
                    )
            if "socket" in parts:
                with _recording_failure(results, ["socket"]):
                    results["parts"]["socket"] = _socket(library, temp, plan, runs)
    return results


@contextlib.contextmanager
def _recording_failure(results: dict[str, Any], parts: list[str]) -> Iterator[None]:
    """Record an exception as the error of ``parts`` and go on with the others."""
    try:
        yield
    except Exception as exc:
        # Any failure of a part, the daemon's included, is a result to report;
        # the other parts still run. KeyboardInterrupt and SystemExit stop all.
        message = f"{type(exc).__name__}: {exc}"
        say(f"FAILED {', '.join(sorted(set(parts)))}: {message}")
        traceback.print_exc()
        for part in parts:
            results["failures"][part] = message


def _check_disk() -> None:
    free = free_disk_bytes(Path(os.environ.get("TMPDIR", "/tmp")))
    say(f"free space for the temporary tree: {free / 1024**3:.1f} GiB")
    if free < _MIN_FREE_BYTES:
        raise SystemExit(
            f"only {free / 1024**3:.1f} GiB free in the temporary folder; the suite "
            f"needs {_MIN_FREE_BYTES / 1024**3:.0f} GiB (set TMPDIR to a larger one)"
        )


def _probe(sources: list[Path], temp: Path, plan: Plan, runs: int) -> dict[str, Any]:
    from probe import run_probe_part, tool_versions

    say(f"probe throughput: {plan.probe_files} files, {runs} run(s)")
    copies = media.copy_sources(sources, temp / "probe-sources")
    files = media.build_library(
        temp / "probe", copies, files=plan.probe_files, folders=1
    )
    paths = sorted(files[0].iterdir())
    result = run_probe_part(paths, runs)
    result["versions"] = tool_versions()
    return result


def _library(sources: list[Path], temp: Path, plan: Plan) -> Library:
    videos = media.complete_videos(sources)
    say(
        f"building a library of {plan.library_files} hard links of "
        f"{len(videos)} complete clips in {plan.library_folders} folders"
    )
    started = time.perf_counter()
    copies = media.copy_sources(videos, temp / "library-sources")
    root = temp / "library"
    media.build_library(
        root, copies, files=plan.library_files, folders=plan.library_folders
    )
    small = min(copies, key=lambda path: path.stat().st_size)
    library = Library(
        root=root,
        files=plan.library_files,
        folders=plan.library_folders,
        events_dir=root / "events",
        burst_dir=root / "burst",
        event_files=media.make_distinct_copies(
            small, temp / "event-sources", plan.renames
        ),
        burst_files=media.make_distinct_copies(
            small, temp / "burst-sources", plan.burst
        ),
    )
    library.events_dir.mkdir()
    library.burst_dir.mkdir()
    say(f"  built in {time.perf_counter() - started:.1f} s")
    return library


def _daemon(
    library: Library, temp: Path, plan: Plan, runs: int, parts: set[str]
) -> dict[str, Any]:
    sizes = Sizes(
        idle_window_s=plan.idle_window_s, renames=plan.renames, burst=plan.burst
    )
    per_run = []
    for run in range(runs):
        say(f"daemon parts, run {run + 1}/{runs}: {', '.join(sorted(parts))}")
        per_run.append(run_daemon_parts(library, temp, sizes, run, parts))
    return {name: _combine([r[name] for r in per_run]) for name in per_run[0]}


def _socket(library: Library, temp: Path, plan: Plan, runs: int) -> dict[str, Any]:
    from socket_part import run_socket_part

    per_run = []
    for run in range(runs):
        say(f"socket load during a first index, run {run + 1}/{runs}")
        per_run.append(
            run_socket_part(
                library.root, library.files, temp / f"socket-{run}", plan.socket_phase_s
            )
        )
    return {"per_run": per_run, "summary": _socket_summary(per_run)}


def _socket_summary(per_run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for state in ("during_scan", "idle"):
        for index, first in enumerate(per_run[0][state]):
            phases = [run[state][index] for run in per_run]
            rows.append(
                {
                    "state": state,
                    "method": first["method"],
                    "clients": first["clients"],
                    "requests_per_s": summarize([p["requests_per_s"] for p in phases]),
                    "p99_ms": summarize([p["p99_ms"] for p in phases]),
                    "median_ms": summarize([p["median_ms"] for p in phases]),
                    "scan_running_at_end": [p["scan_running_at_end"] for p in phases],
                }
            )
    return rows


def _combine(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep every run and summarize each numeric figure across the runs.

    A figure that not every run has is kept only in ``per_run``: the idle CPU
    by thread, for one, is keyed by thread ids that change from run to run.
    """
    flat = [_flatten(run) for run in per_run]
    summary = {
        key: summarize([run[key] for run in flat])
        for key, value in flat[0].items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and all(key in run for run in flat)
    }
    return {"summary": summary, "per_run": per_run}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _public(value: Any) -> Any:
    """Drop keys starting with ``_`` (raw samples) and non-finite numbers."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def machine_info() -> dict[str, Any]:
    """Describe the machine: cores, CPU model, memory, kernel, Python, date."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


if __name__ == "__main__":
    sys.exit(main())
