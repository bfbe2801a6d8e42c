"""Turn the suite's results into goal verdicts, PNG plots and the docs section.

Only the text between the two marker comments of ``docs/benchmarks.md`` is
regenerated; the analysis around it is written by hand. Run as a script, it
redraws the plots and the section from ``benchmarks/out/results.json``
without measuring again.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import OUT_DIR, REPO, say

__all__ = ["goal_lines", "goals", "update_docs", "write_plots"]

DOC = REPO / "docs" / "benchmarks.md"
DOC_FIGURES = REPO / "docs" / "benchmarks"
BEGIN = "<!-- figures:begin (written by benchmarks/run.py) -->"
END = "<!-- figures:end -->"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Check every goal the measured parts cover.

    Each entry has ``goal``, ``measured`` (text) and ``met``.
    """
    parts = results["parts"]
    checks: list[dict[str, Any]] = []

    def add(goal: str, measured: str, met: bool) -> None:
        checks.append({"goal": goal, "measured": measured, "met": met})

    if "probe" in parts:
        for peer, ratio in parts["probe"]["ratios"].items():
            if ratio["goal"] is not None:
                add(
                    f"probe: at least {ratio['goal']:.0f}x {peer}",
                    f"{ratio['ratio']:.0f}x",
                    ratio["met"],
                )
    if "index" in parts:
        index = parts["index"]["summary"]
        rate = index["files_per_s"]["median"]
        ratio = index["ratio_to_floor"]["median"]
        add("first index: at least 5,000 files/s", f"{rate:,.0f} files/s", rate >= 5000)
        add("first index: at most 3x the floor", f"{ratio:.1f}x", ratio <= 3)
    if "recheck" in parts:
        recheck = parts["recheck"]["summary"]
        for step in ("restart", "rescan"):
            ratio = recheck[f"{step}_ratio_to_find"]["median"]
            probes = recheck[f"{step}_probes"]["max"]
            add(f"re-check ({step}): at most 1.5x find", f"{ratio:.1f}x", ratio <= 1.5)
            add(f"re-check ({step}): no probes", f"{probes:.0f} probes", probes == 0)
    if "events" in parts:
        gap = parts["events"]["summary"]["p99_gap_ms"]["median"]
        add(
            "event to catalog: p99 within 100 ms of inotifywait",
            f"{gap:.0f} ms behind",
            gap <= 100,
        )
    if "burst" in parts:
        burst = parts["burst"]["summary"]
        wrong = burst["missing"]["max"] + burst["duplicates"]["max"]
        add("burst: none missing or doubled", f"{wrong:.0f} wrong", wrong == 0)
    if "resources" in parts:
        cpu = parts["resources"]["summary"]["idle_cpu_percent"]["median"]
        add("idle: under 0.1 % of a core", f"{cpu:.3f} %", cpu < 0.1)
    return checks


def goal_lines(results: dict[str, Any]) -> list[str]:
    """Return one line per goal, for the end of the console output."""
    lines = [
        f"{'met ' if check['met'] else 'MISS'}  {check['goal']}: {check['measured']}"
        for check in goals(results)
    ]
    for part, error in results.get("failures", {}).items():
        lines.append(f"FAILED {part}: {error}")
    return lines


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Draw a PNG per measured part into ``out_dir``; return the files written."""
    try:
        import matplotlib
    except ImportError as exc:
        say(f"plots skipped: matplotlib cannot be imported ({exc})")
        return []
    matplotlib.use("Agg")

    drawers: dict[str, Callable[[dict[str, Any], Path], None]] = {
        "probe": _plot_probe,
        "index": _plot_index,
        "events": _plot_events,
        "socket": _plot_socket,
    }
    written = []
    for part, draw in drawers.items():
        if part in results["parts"]:
            path = out_dir / f"{part}.png"
            draw(results["parts"][part], path)
            written.append(path)
    return written


def _plot_probe(probe: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(probe["peers"])
    rates = [probe["peers"][n]["files_per_s"] for n in names]
    medians = [r["median"] for r in rates]
    spread = [
        [r["median"] - r["min"] for r in rates],
        [r["max"] - r["median"] for r in rates],
    ]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.barh(names, medians, xerr=spread, color="#4878a8")
    axes.set_xscale("log")
    axes.set_xlabel("files per second (log scale; bars: median, lines: min to max)")
    axes.invert_yaxis()
    for y, value in enumerate(medians):
        axes.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    axes.set_title(f"Probe throughput on the same {probe['files']} files")
    _save(figure, path)


def _plot_index(index: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    summary = index["summary"]
    bars = {
        "daemon: first index": "seconds",
        "floor: list + read 2x64 KiB": "floor_seconds",
    }
    figure, axes = plt.subplots(figsize=(7, 2.5))
    labels = list(bars)
    values = [summary[key]["median"] for key in bars.values()]
    axes.barh(labels, values, color=["#4878a8", "#999999"])
    axes.invert_yaxis()
    axes.set_xlabel("seconds (median)")
    files = index["per_run"][0]["files"]
    axes.set_title(f"First index of {files:,} files")
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:.1f} s", va="center", fontsize=8)
    _save(figure, path)


def _plot_events(events: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    catalog = [ms for run in events["per_run"] for ms in run["catalog_samples_ms"]]
    floor = [ms for run in events["per_run"] for ms in run["inotifywait_samples_ms"]]
    for samples, label, color in (
        (catalog, "rename to videos.list", "#4878a8"),
        (floor, "rename to inotifywait line", "#999999"),
    ):
        ordered = sorted(samples)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fractions, where="post", label=label, color=color)
    axes.set_xscale("log")
    axes.set_xlabel("milliseconds after the rename (log scale)")
    axes.set_ylabel("share of renames")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(f"Event to catalog, {len(catalog)} renames")
    _save(figure, path)


def _plot_socket(socket: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = socket["summary"]
    labels = [f"{r['method']} x{r['clients']}" for r in rows if r["state"] == "idle"]
    figure, (rate_axes, p99_axes) = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.4
    for offset, state, color in (
        (-width / 2, "during_scan", "#4878a8"),
        (width / 2, "idle", "#999999"),
    ):
        chosen = [r for r in rows if r["state"] == state]
        xs = [i + offset for i in range(len(chosen))]
        label = state.replace("_", " ")
        rate_axes.bar(
            xs,
            [r["requests_per_s"]["median"] for r in chosen],
            width,
            label=label,
            color=color,
        )
        p99_axes.bar(
            xs, [r["p99_ms"]["median"] for r in chosen], width, label=label, color=color
        )
    for axes, title in (
        (rate_axes, "requests per second"),
        (p99_axes, "p99 latency, ms"),
    ):
        axes.set_xticks(range(len(labels)), labels, fontsize=8)
        axes.set_title(title, fontsize=10)
    p99_axes.set_yscale("log")
    rate_axes.legend(fontsize=8)
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def update_docs(results: dict[str, Any], plots: list[Path]) -> None:
    """Copy the plots to docs/benchmarks/ and rewrite the doc's figures section.

    Raises:
        RuntimeError: the doc exists but lacks the marker comments.
    """
    DOC_FIGURES.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        shutil.copyfile(plot, DOC_FIGURES / plot.name)
    section = "\n".join([BEGIN, "", render(results, [p.name for p in plots]), END])
    if not DOC.exists():
        DOC.write_text(f"# Benchmarks\n\n{section}\n", encoding="utf-8")
        return
    text = DOC.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise RuntimeError(
            f"{DOC} lacks the markers {BEGIN!r} and {END!r}; add them where the "
            "generated figures belong"
        )
    DOC.write_text(head + section + tail, encoding="utf-8")


def render(results: dict[str, Any], plot_names: list[str]) -> str:
    """Render the figures section in Markdown."""
    machine = results["machine"]
    lines = [
        f"Measured {machine['date']} on {machine['nproc']} cores "
        f"({machine['cpu_model']}), {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['python']}, with "
        f"`{results['command']}` ({results['runs']} run(s) per part; figures are "
        "medians, with the range over runs in brackets).",
        "",
        "### Goals",
        "",
        "| Goal | Measured | Met |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {c['goal']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |"
        for c in goals(results)
    ]
    for part, error in results.get("failures", {}).items():
        lines += ["", f"The part `{part}` failed: `{error}`."]
    parts = results["parts"]
    renderers: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "probe": _render_probe,
        "index": _render_index,
        "recheck": _render_recheck,
        "events": _render_events,
        "burst": _render_burst,
        "resources": _render_resources,
        "socket": _render_socket,
    }
    for name, render_part in renderers.items():
        if name in parts:
            lines += ["", *render_part(parts[name])]
            if f"{name}.png" in plot_names:
                lines += ["", f"![{name}](benchmarks/{name}.png)"]
    return "\n".join(lines) + "\n"


def _span(stats: dict[str, Any], fmt: str = "{:,.1f}") -> str:
    text = fmt.format(stats["median"])
    if len(stats["runs"]) > 1:
        text += f" [{fmt.format(stats['min'])} to {fmt.format(stats['max'])}]"
    return text


def _mib(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "median": stats["median"] / 1024**2,
        "min": stats["min"] / 1024**2,
        "max": stats["max"] / 1024**2,
        "runs": [value / 1024**2 for value in stats["runs"]],
    }


def _render_probe(probe: dict[str, Any]) -> list[str]:
    lines = [
        "### Probe throughput",
        "",
        f"{probe['files']} hard links of {probe['distinct_sources']} files (the "
        f"corpus media and the generated clips, broken ones included; mean size "
        f"{probe['mean_file_bytes'] / 1024:.0f} KiB), read from the page cache. "
        f"ffprobe runs once per file, {probe['parallel_processes']} processes at a "
        "time; mediainfo gets every path in one process; pymediainfo runs in "
        "this process. Bytes read are the syscall reads of the peer and its "
        "children.",
        "",
        "| Peer | Files/s | Bytes read per file | Core is faster by |",
        "| --- | --- | --- | --- |",
    ]
    for name, peer in probe["peers"].items():
        ratio = probe["ratios"].get(name)
        faster = "" if ratio is None else f"{ratio['ratio']:,.0f}x"
        lines.append(
            f"| {name} | {_span(peer['files_per_s'])} | "
            f"{peer['bytes_per_file']['median']:,.0f} | {faster} |"
        )
    for name, reason in probe["skipped_peers"].items():
        lines.append(f"| {name} | skipped: {reason} | | |")
    versions = ", ".join(f"{k} {v}" for k, v in probe.get("versions", {}).items())
    core_bytes = probe["peers"]["core"]["core_reported_bytes_per_file"]
    lines += [
        "",
        f"The core itself reports {core_bytes:,.0f} bytes read per file. "
        f"Versions: {versions}.",
    ]
    return lines


def _render_index(index: dict[str, Any]) -> list[str]:
    summary = index["summary"]
    first = index["per_run"][0]
    return [
        "### First index",
        "",
        f"{first['files']:,} hard links in {first['folders']:,} folders; time from "
        "starting the daemon process to `status.idle` with every file listed. The "
        "floor lists the tree with `os.scandir` and reads the first and last "
        "64 KiB of every file on a thread pool.",
        "",
        "| Figure | Daemon | Floor | Ratio |",
        "| --- | --- | --- | --- |",
        f"| seconds | {_span(summary['seconds'])} | {_span(summary['floor_seconds'])} "
        f"| {_span(summary['ratio_to_floor'])}x |",
        f"| files/s | {_span(summary['files_per_s'], '{:,.0f}')} | "
        f"{first['files'] / summary['floor_seconds']['median']:,.0f} | |",
        f"| of which start-up until the socket answers, s | "
        f"{_span(summary['socket_ready_s'], '{:.2f}')} | | |",
        f"| resident memory after the index, MiB | "
        f"{summary['rss_bytes']['median'] / 1024**2:,.0f} | | |",
    ]


def _render_recheck(recheck: dict[str, Any]) -> list[str]:
    summary = recheck["summary"]
    method = recheck["per_run"][0]["rescan_method"]
    return [
        "### Re-check of the unchanged library",
        "",
        f"A restart (start-up reconciliation) and a `{method}` of the root, each "
        "until `status.idle`, next to `find ROOT -printf '%s %T@ %i\\n'`. Probes "
        "are the files that the scan jobs did not skip as unchanged.",
        "",
        "| Step | Seconds | find, s | Ratio to find | Probes |",
        "| --- | --- | --- | --- | --- |",
        f"| restart to idle | {_span(summary['restart_seconds'], '{:.2f}')} | "
        f"{_span(summary['find_seconds'], '{:.2f}')} | "
        f"{_span(summary['restart_ratio_to_find'])}x | "
        f"{summary['restart_probes']['max']:.0f} |",
        f"| of which until the socket answers | "
        f"{_span(summary['restart_socket_ready_s'], '{:.2f}')} | | | |",
        f"| {method} to idle | {_span(summary['rescan_seconds'], '{:.2f}')} | "
        f"{_span(summary['find_seconds'], '{:.2f}')} | "
        f"{_span(summary['rescan_ratio_to_find'])}x | "
        f"{summary['rescan_probes']['max']:.0f} |",
    ]


def _render_events(events: dict[str, Any]) -> list[str]:
    summary = events["summary"]
    renames = events["per_run"][0]["renames"]
    return [
        "### Event to catalog",
        "",
        f"{renames} files renamed one at a time into a watched folder; each is "
        "timed until `videos.list` (polled on one connection every millisecond) "
        "returns it, and until `inotifywait -m` on that folder prints its line.",
        "",
        "| | Median, ms | p99, ms | Max, ms |",
        "| --- | --- | --- | --- |",
        f"| rename to `videos.list` | {_span(summary['catalog_ms.median'])} | "
        f"{_span(summary['catalog_ms.p99'])} | {_span(summary['catalog_ms.max'])} |",
        f"| rename to `inotifywait` | "
        f"{_span(summary['inotifywait_ms.median'], '{:.2f}')} | "
        f"{_span(summary['inotifywait_ms.p99'], '{:.2f}')} | "
        f"{_span(summary['inotifywait_ms.max'], '{:.2f}')} |",
    ]


def _render_burst(burst: dict[str, Any]) -> list[str]:
    summary = burst["summary"]
    files = burst["per_run"][0]["files"]
    mib = 1024**2
    return [
        "### Burst",
        "",
        f"{files:,} hard links created as fast as possible in one watched folder "
        "(each link to its own inode), timed from the first link until "
        "`status.idle` with all of them counted; then the full listing is "
        "compared with the disk. Afterwards the links are removed again.",
        "",
        "| Figure | Value |",
        "| --- | --- |",
        f"| creating the links, s | {_span(summary['create_seconds'], '{:.2f}')} |",
        f"| first link to all listed, s | {_span(summary['seconds'], '{:.2f}')} |",
        f"| files/s | {_span(summary['files_per_s'], '{:,.0f}')} |",
        f"| missing / doubled / unexpected | {summary['missing']['max']:.0f} / "
        f"{summary['duplicates']['max']:.0f} / {summary['unexpected']['max']:.0f} |",
        f"| removal until the catalog is back, s | "
        f"{_span(summary['removal_seconds'], '{:.2f}')} |",
        f"| resident memory before / after / after removal, MiB | "
        f"{summary['rss_before_bytes']['median'] / mib:,.0f} / "
        f"{summary['rss_after_bytes']['median'] / mib:,.0f} / "
        f"{summary['rss_after_removal_bytes']['median'] / mib:,.0f} |",
    ]


def _render_resources(resources: dict[str, Any]) -> list[str]:
    summary = resources["summary"]
    window = summary["idle_window_s"]["median"]
    return [
        "### Resources while watching the library",
        "",
        "Read from `/proc/PID` of the daemon right after its first index went idle.",
        "",
        "| Figure | Value |",
        "| --- | --- |",
        f"| resident memory, MiB | {_span(_mib(summary['rss_bytes']), '{:,.0f}')} |",
        f"| open file descriptors | {_span(summary['open_fds'], '{:.0f}')} |",
        f"| threads | {_span(summary['threads'], '{:.0f}')} |",
        f"| CPU time over {window:.0f} s idle, ms | "
        f"{summary['idle_cpu_s']['median'] * 1000:.0f} |",
        f"| CPU share of one core while idle, % | "
        f"{_span(summary['idle_cpu_percent'], '{:.3f}')} |",
        f"| idle CPU by thread, ms | {_threads(resources['per_run'][0])} |",
    ]


def _threads(run: dict[str, Any]) -> str:
    by_thread = run.get("idle_cpu_ms_by_thread", {})
    busiest = sorted(by_thread.items(), key=lambda item: -item[1])
    return ", ".join(f"{name}: {ms}" for name, ms in busiest if ms > 0) or "none"


def _render_socket(socket: dict[str, Any]) -> list[str]:
    phase = socket["per_run"][0]["phase_seconds"]
    lines = [
        "### Control socket",
        "",
        f"Each client keeps one connection and sends the next request as soon as "
        f"the reply arrives, for {phase:g} s per row; `videos.list` asks for "
        '100 entries. "During scan" rows run while a fresh daemon does its '
        'first index of the library; "idle" rows repeat them afterwards. The '
        "clients run in one asyncio process on the same cores.",
        "",
        "| Request | Clients | State | Requests/s | Median, ms | p99, ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in socket["summary"]:
        state = row["state"].replace("_", " ")
        if row["state"] == "during_scan" and not all(row["scan_running_at_end"]):
            state += " (the scan had ended)"
        lines.append(
            f"| `{row['method']}` | {row['clients']} | {state} | "
            f"{_span(row['requests_per_s'], '{:,.0f}')} | "
            f"{_span(row['median_ms'], '{:.2f}')} | {_span(row['p99_ms'], '{:.2f}')} |"
        )
    return lines


def main() -> int:
    """Redraw the plots and the docs section from the last results.json."""
    results = json.loads((OUT_DIR / "results.json").read_text(encoding="utf-8"))
    update_docs(results, write_plots(results, OUT_DIR))
    say("docs/benchmarks.md and docs/benchmarks/*.png regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
