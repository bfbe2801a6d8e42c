"""Measurements of the daemon: Prometheus metrics and catalog statistics.

The metrics are rendered in the Prometheus text exposition format, version
0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). The few
metric types needed here are implemented directly, so the daemon needs no
client library.
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Final, Protocol

from .core import (
    Core,
    Fingerprint,
    KnownFiles,
    PathCheck,
    ProbeResult,
    WalkComparison,
    WalkResult,
)
from .models import Video, VideoPage
from .protocol import CatalogStats

__all__ = [
    "LATENCY_BUCKETS_S",
    "ChangeTimer",
    "Counter",
    "DaemonMetrics",
    "Histogram",
    "MeteredCore",
    "VideoLister",
    "compute_stats",
    "resolution_bucket",
]

LATENCY_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds of the latency histograms' buckets, in seconds."""

# Paths remembered between their filesystem event and their catalog write.
_MAX_TIMED_PATHS: Final = 100_000
_STATS_PAGE: Final = 1000


class Counter:
    """A monotonically increasing value, optionally split by label values."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help_text = help_text
        self.labels = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount``; ``labels`` must name every label of the counter."""
        key = tuple(labels[name] for name in self.labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """Return the current value for ``labels``."""
        return self._values.get(tuple(labels[name] for name in self.labels), 0.0)

    def render(self) -> list[str]:
        lines = _header(self.name, self.help_text, "counter")
        if not self.labels and not self._values:
            lines.append(f"{self.name} 0")
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.labels, key)} {_number(value)}")
        return lines


class Histogram:
    """Counts of observations below each bucket bound, with their sum."""

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS_S
    ) -> None:
        self.name = name
        self.help_text = help_text
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Add one observation."""
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self._counts):
            self._counts[index] += 1
        self.count += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = _header(self.name, self.help_text, "histogram")
        cumulative = 0
        for bound, count in zip(self.buckets, self._counts, strict=True):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class DaemonMetrics:
    """Every metric the daemon exports, updated as things happen."""

    def __init__(self) -> None:
        self.events_seen = Counter(
            "reelwatch_events_seen_total",
            "Filesystem changes reported by the watcher, by kind "
            "(added, modified, deleted; rescan for trees whose events were lost).",
            ["kind"],
        )
        self.probes = Counter(
            "reelwatch_probes_total", "Files whose container headers were probed."
        )
        self.probe_errors = Counter(
            "reelwatch_probe_errors_total",
            "Probes that failed, by the core's error kind.",
            ["kind"],
        )
        self.probe_batch_seconds = Histogram(
            "reelwatch_probe_batch_seconds",
            "Time to probe one batch of files (up to scan.probe_batch_size).",
        )
        self.event_to_catalog_seconds = Histogram(
            "reelwatch_event_to_catalog_seconds",
            "Time from a filesystem event on a path to the catalog write for it, "
            "including the settle wait.",
        )
        self.subscriptions_dropped = Counter(
            "reelwatch_subscriptions_dropped_total",
            "Subscribers disconnected because their notification backlog was full.",
        )

    def render(
        self,
        *,
        jobs_by_state: Mapping[str, int],
        catalog_videos: int,
        connections: int,
        connections_accepted: int,
        connections_rejected: int,
        subscribers: int,
    ) -> str:
        """Render every metric, with the gauges read now, as exposition text."""
        lines = _header(
            "reelwatch_jobs", "Jobs in the job table, by state.", "gauge"
        ) + [
            f'reelwatch_jobs{{state="{state}"}} {count}'
            for state, count in sorted(jobs_by_state.items())
        ]
        gauges = [
            ("reelwatch_catalog_videos", "Catalog entries.", catalog_videos),
            ("reelwatch_connections", "Open control connections.", connections),
            ("reelwatch_subscribers", "Open notification subscriptions.", subscribers),
        ]
        for name, help_text, value in gauges:
            lines += _header(name, help_text, "gauge") + [f"{name} {value}"]
        accepted = Counter(
            "reelwatch_connections_accepted_total", "Control connections accepted."
        )
        accepted.inc(connections_accepted)
        rejected = Counter(
            "reelwatch_connections_rejected_total",
            "Control connections refused at the connection limit.",
        )
        rejected.inc(connections_rejected)
        for metric in (
            self.events_seen,
            self.probes,
            self.probe_errors,
            self.probe_batch_seconds,
            self.event_to_catalog_seconds,
            self.subscriptions_dropped,
            accepted,
            rejected,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}"]


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{name}="{_escape_label(value)}"'
        for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value):
        return str(int(value))
    return repr(value)


class ChangeTimer:
    """Times each path from its filesystem event to its catalog write.

    Only the first event since the last write counts, so a file written for a
    minute reports the whole minute. At most 100,000 paths are remembered; the
    oldest is forgotten first, and a path that changes without a catalog
    write (an unchanged file, a file without a video extension) stays until
    then.
    """

    def __init__(
        self, histogram: Histogram, *, max_paths: int = _MAX_TIMED_PATHS
    ) -> None:
        self._histogram = histogram
        self._max_paths = max_paths
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, path: str) -> None:
        """Note that an event for ``path`` arrived now."""
        if path in self._seen:
            return
        self._seen[path] = time.monotonic()
        if len(self._seen) > self._max_paths:
            self._seen.popitem(last=False)

    def written(self, path: str) -> None:
        """Note that the catalog entry for ``path`` was written now."""
        started = self._seen.pop(path, None)
        if started is not None:
            self._histogram.observe(time.monotonic() - started)


class MeteredCore:
    """A :class:`Core` wrapper that counts and times probes."""

    def __init__(self, inner: Core, metrics: DaemonMetrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def probe(
        self,
        paths: Sequence[str],
        *,
        roots: Sequence[str] | None = None,
        fingerprint: bool = False,
    ) -> list[ProbeResult]:
        if not paths:
            return await self.inner.probe(paths, roots=roots, fingerprint=fingerprint)
        started = time.monotonic()
        results = await self.inner.probe(paths, roots=roots, fingerprint=fingerprint)
        self._metrics.probe_batch_seconds.observe(time.monotonic() - started)
        self._metrics.probes.inc(len(results))
        for result in results:
            if not result.ok:
                self._metrics.probe_errors.inc(kind=result.error_kind or "unknown")
        return results

    async def walk(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
    ) -> WalkResult:
        return await self.inner.walk(
            root, extensions=extensions, ignore=ignore, allowed_roots=allowed_roots
        )

    async def walk_compared(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
        read_known: Callable[[], Awaitable[KnownFiles]],
    ) -> WalkComparison:
        return await self.inner.walk_compared(
            root,
            extensions=extensions,
            ignore=ignore,
            allowed_roots=allowed_roots,
            read_known=read_known,
        )

    async def check_paths(
        self, paths: Sequence[str], roots: Sequence[str]
    ) -> list[PathCheck]:
        return await self.inner.check_paths(paths, roots)

    async def fingerprint(self, paths: Sequence[str]) -> list[Fingerprint]:
        return await self.inner.fingerprint(paths)


# ---------------------------------------------------------------------------
# Catalog statistics

# (name, minimum long side, minimum short side), largest first. A video is in
# the first bucket whose long or short side minimum it reaches, so 1920x800
# (cinemascope) is 1080p and a 1080x1920 phone video is 1080p too.
_RESOLUTIONS: Final = (
    ("4320p", 7680, 4320),
    ("2160p", 3840, 2160),
    ("1440p", 2560, 1440),
    ("1080p", 1920, 1080),
    ("720p", 1280, 720),
    ("480p", 640, 480),
)


def resolution_bucket(width: int | None, height: int | None) -> str:
    """Name the resolution class of a frame size, or ``unknown`` without one."""
    if not width or not height:
        return "unknown"
    long_side, short_side = max(width, height), min(width, height)
    for name, min_long, min_short in _RESOLUTIONS:
        if long_side >= min_long or short_side >= min_short:
            return name
    return "sd"


class VideoLister(Protocol):
    """The part of a repository that :func:`compute_stats` reads."""

    async def list_videos(
        self, *, under: str | None, limit: int, cursor: str | None
    ) -> VideoPage: ...


async def compute_stats(repository: VideoLister, *, under: str | None) -> CatalogStats:
    """Total the catalog entries at or under ``under`` (everything when None).

    The codec, container and resolution counts cover the entries that were
    probed without error; ``errors`` counts the others.
    """
    stats = CatalogStats()
    cursor = None
    while True:
        page = await repository.list_videos(
            under=under, limit=_STATS_PAGE, cursor=cursor
        )
        for video in page.videos:
            _add_video(stats, video)
        cursor = page.next_cursor
        if cursor is None:
            break
    for counts in (
        stats.by_container,
        stats.by_video_codec,
        stats.by_audio_codec,
        stats.by_resolution,
    ):
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        counts.clear()
        counts.update(ordered)
    return stats


def _add_video(stats: CatalogStats, video: Video) -> None:
    stats.videos += 1
    stats.total_size += video.size
    if video.offline:
        stats.offline += 1
    if video.error is not None:
        stats.errors += 1
        return
    if video.duration_s is not None:
        stats.total_duration_s += video.duration_s
    _count(stats.by_container, video.container or "unknown")
    _count(stats.by_video_codec, video.video_codec or "unknown")
    # A probed file without an audio codec has no audio stream.
    _count(stats.by_audio_codec, video.audio_codec or "none")
    _count(stats.by_resolution, resolution_bucket(video.width, video.height))


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1
