"""Compare the Rust core's probe with ffprobe 5.1 field by field.

Runs over the shared corpus, over the project's fixtures in ``tests/fixtures``
and, where ffmpeg is installed, over clips made by the corpus's
``generate.sh`` and by ``media_fixtures.make_codec_clips``. Prints a
per-container, per-field match table. Mismatches fail the test for the
container families in ``STRICT_FAMILIES``; for the others they are reported
only, until their parsers are complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from media_fixtures import FIXTURES, make_codec_clips
from reelwatch import _core

# ffprobe `format_name` values whose mismatches fail the test: every family
# the core has a parser for.
STRICT_FAMILIES = frozenset(
    {
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "mpegts",
        "mpeg",
        "ogg",
        "flv",
        "asf",
    }
)

FIELDS = (
    "width",
    "height",
    "rotation",
    "video_codec",
    "video_profile",
    "audio_codec",
    "audio_channels",
    "audio_sample_rate",
    "duration",
    "frame_rate",
    "bit_rate",
    "streams",
)

# Fields compared even when ffprobe has no value: a profile the core invents
# for a codec that ffprobe gives none is as wrong as a missing one.
COMPARED_WHEN_ABSENT = frozenset({"video_profile"})
# Marks a value left out of the comparison where None would be compared.
SKIPPED = object()

# Values ffprobe guesses instead of reading them from the container. For
# these files ffprobe estimates avg_frame_rate from the first packets'
# timestamps, because the container stores no rate: Matroska tracks without
# DefaultDuration, an init segment with no samples, and ASF.
GUESSED_FRAME_RATE = frozenset(
    {
        "chrome57.webm",
        "annex-b-avc.mkv",
        "bbb-vp9-opus.webm",
        "mp4ff-V300-init.mp4",
        "fixture.wmv.asf",
        "wmv_wmv2_wmav2.wmv",
    }
)
# Files whose video stream has no packets: an init segment without samples
# and a Matroska file cut inside its first cluster. ffprobe takes the H.264
# profile from a parsed frame, so it prints none for them. The core reports
# the profile that the avcC record in the header states.
PROFILE_WITHOUT_FRAMES = frozenset(
    {"mp4ff-V300-init.mp4", "init-0.m4s", "trunc_header_only_first1k.mkv"}
)
MEDIA_SUFFIXES = (".json", ".err", ".tsv", ".mpd")


@dataclass
class Comparison:
    """Matches and mismatches per (container, field), plus the failures."""

    counts: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    mismatches: list[str] = field(default_factory=list)
    strict_mismatches: list[str] = field(default_factory=list)
    bytes_read: list[tuple[str, int, int]] = field(default_factory=list)


def _media_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not path.name.endswith(MEDIA_SUFFIXES)
        and path.with_name(path.name + ".ffprobe.json").exists()
    )


def _expected(path: Path) -> dict[str, Any] | None:
    """ffprobe's values in the probe's terms, or None when ffprobe failed."""
    data = json.loads(path.with_name(path.name + ".ffprobe.json").read_text())
    fmt = data.get("format")
    if not fmt:
        return None
    streams = data.get("streams", [])
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not s.get("disposition", {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    video = videos[0] if videos else {}
    rotation = next(
        (
            int(item["rotation"])
            for item in video.get("side_data_list", [])
            if "rotation" in item
        ),
        0,
    )
    rate = video.get("avg_frame_rate", "0/0")
    frame_rate = None
    if rate != "0/0" and path.name not in GUESSED_FRAME_RATE:
        num, den = (int(part) for part in rate.split("/"))
        frame_rate = Fraction(num, den) if den else None
    duration = fmt.get("duration")
    bit_rate = fmt.get("bit_rate")
    audio = audios[0] if audios else {}
    # ffprobe prints sample_rate 0 when it parsed no audio frame (the AC-3
    # stream of the 1,344-byte M2TS.mts); there is no rate to compare then.
    sample_rate = int(audio.get("sample_rate", 0)) or None
    return {
        "family": fmt["format_name"],
        "width": video.get("width"),
        "height": video.get("height"),
        "rotation": rotation if video else None,
        "video_codec": video.get("codec_name"),
        "video_profile": (
            video.get("profile") if path.name not in PROFILE_WITHOUT_FRAMES else SKIPPED
        ),
        "audio_codec": audio.get("codec_name"),
        "audio_channels": audio.get("channels") or None,
        "audio_sample_rate": sample_rate,
        "duration": float(duration) if duration is not None else None,
        "frame_rate": frame_rate,
        "bit_rate": int(bit_rate) if bit_rate is not None else None,
        # Video (cover art excluded), audio and subtitle streams.
        "streams": (
            len(videos),
            len(audios),
            sum(1 for s in streams if s.get("codec_type") == "subtitle"),
        ),
    }


def _matches(name: str, expected: Any, got: Any) -> bool:
    if name == "duration":
        tolerance = max(0.1, 0.005 * expected)
        return got is not None and abs(got - expected) <= tolerance
    if name == "frame_rate":
        if got is None:
            return False
        rate = Fraction(got[0], got[1])
        return bool(abs(rate - expected) <= expected * Fraction(1, 1000))
    if name == "bit_rate":
        # ffprobe divides the file size by its duration, so a duration within
        # its 0.5 % tolerance moves the rate by as much; allow twice that.
        return got is not None and abs(got - expected) <= 0.01 * expected
    return bool(expected == got)


def _actual(result: _core.ProbeResult) -> dict[str, Any]:
    return {
        "width": result.width,
        "height": result.height,
        # Containers without a display matrix leave rotation unset: upright.
        "rotation": 0 if result.rotation is None else result.rotation,
        "video_codec": result.video_codec,
        "video_profile": result.video_profile,
        "audio_codec": result.audio_codec,
        "audio_channels": result.audio_channels,
        "audio_sample_rate": result.audio_sample_rate,
        "duration": result.duration_s,
        "frame_rate": result.frame_rate,
        "bit_rate": result.bit_rate,
        "streams": (
            result.video_streams,
            result.audio_streams,
            result.subtitle_streams,
        ),
    }


def _compare(folder: Path) -> Comparison:
    files = _media_files(folder)
    results = _core.probe_many(files)
    comparison = Comparison()
    for path, result in zip(files, results, strict=True):
        label = str(path.relative_to(folder))
        comparison.bytes_read.append((label, result.bytes_read, result.size))
        expected = _expected(path)
        if expected is None:
            continue
        family = expected.pop("family")
        if expected["video_codec"] is None and result.error_kind == "no_video":
            # Files without video are rejected by design; nothing to compare.
            continue
        container = result.container or family.split(",")[0]
        actual = _actual(result)
        for name, value in expected.items():
            if value is SKIPPED or (value is None and name not in COMPARED_WHEN_ABSENT):
                continue
            count = comparison.counts[(container, name)]
            count[1] += 1
            if result.ok and _matches(name, value, actual[name]):
                count[0] += 1
                continue
            got = actual[name] if result.ok else f"{result.error_kind}: {result.error}"
            line = f"{label}: {name} expected {value!r}, got {got!r}"
            comparison.mismatches.append(line)
            if family in STRICT_FAMILIES:
                comparison.strict_mismatches.append(line)
    return comparison


def _report(title: str, comparison: Comparison) -> str:
    containers = sorted({container for container, _ in comparison.counts})
    header = ["container", *FIELDS]
    rows = [header]
    for container in containers:
        row = [container]
        for name in FIELDS:
            matched, total = comparison.counts.get((container, name), [0, 0])
            row.append(f"{matched}/{total}" if total else "-")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"\n{title}: probe vs ffprobe 5.1, matched/compared"]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        )
    if comparison.mismatches:
        lines.append("mismatches:")
        lines.extend(f"  {line}" for line in comparison.mismatches)
    lines.append("bytes read per file (bytes_read / size):")
    lines.extend(
        f"  {label}: {read} / {size}" for label, read, size in comparison.bytes_read
    )
    return "\n".join(lines) + "\n"


def _run(title: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    comparison = _compare(folder)
    with capsys.disabled():
        sys.stdout.write(_report(title, comparison))
    assert comparison.counts, f"no file with ffprobe JSON found in {folder}"
    assert not comparison.strict_mismatches, "\n".join(comparison.strict_mismatches)


@pytest.fixture(scope="session")
def generated_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    script = media.parent / "generate.sh"
    if not script.is_file():
        pytest.skip(f"generate.sh not found next to the corpus media ({script})")
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg and ffprobe are needed to generate clips; not on PATH")
    out = tmp_path_factory.mktemp("generated")
    completed = subprocess.run(
        ["bash", str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    # The script exits 1 when one encoder is missing but still writes the
    # other clips; compare whatever it made.
    if not _media_files(out):
        pytest.fail(f"generate.sh made no clips: {completed.stderr[-2000:]}")
    return out


def test_accuracy_on_shared_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    _run("shared corpus", media, capsys)


@pytest.mark.timeout(900)
def test_accuracy_on_generated_clips(
    generated_media: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run("generated clips", generated_media, capsys)


def test_accuracy_on_project_fixtures(capsys: pytest.CaptureFixture[str]) -> None:
    _run("project fixtures", FIXTURES, capsys)


@pytest.fixture(scope="session")
def codec_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg and ffprobe are needed to make codec clips; not on PATH")
    out = tmp_path_factory.mktemp("codecs")
    failures = make_codec_clips(out)
    # A missing encoder costs its clips; compare the others.
    if not _media_files(out):
        pytest.fail("no codec clip could be made:\n" + "\n".join(failures))
    return out


@pytest.mark.timeout(300)
def test_accuracy_on_codec_clips(
    codec_clips: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run("codec clips", codec_clips, capsys)
