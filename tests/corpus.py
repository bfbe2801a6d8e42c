"""Find the shared media corpus and read ffprobe's reference values for its files."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Expected", "corpus_media_dir", "expected_from_ffprobe", "SKIP_REASON"]

REPO = Path(__file__).resolve().parent.parent

SKIP_REASON = (
    "media corpus not found: set REELWATCH_CORPUS or place it at ../shared/corpus "
    "next to the repository"
)


def corpus_media_dir() -> Path | None:
    """Return the corpus's `media/` folder, or None when it is not available."""
    configured = os.environ.get("REELWATCH_CORPUS")
    base = Path(configured) if configured else REPO.parent / "shared" / "corpus"
    media = base / "media"
    return media if media.is_dir() else None


class Expected(msgspec.Struct, kw_only=True):
    """ffprobe's values for one file, in the daemon's field names.

    A field is None where ffprobe has no value or where its value is a guess
    rather than something the container states.
    """

    ok: bool
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    duration_s: float | None = None
    frame_rate: Fraction | None = None
    rotation: int | None = None


# Values that ffprobe 5.1 guesses instead of reading them from the container:
# a duration from the header of an init segment that contains no samples, and
# frame rates of files that signal none.
GUESSED_DURATION = {"mp4ff-V300-init.mp4"}
GUESSED_FRAME_RATE = {
    "fixture.wmv.asf",
    "mp4ff-V300-init.mp4",
    "chrome57.webm",
    "annex-b-avc.mkv",
}


def expected_from_ffprobe(media: Path) -> Expected:
    """Read `<media>.ffprobe.json` (and `.ffprobe.err`) next to ``media``."""
    if media.with_name(media.name + ".ffprobe.err").exists():
        return Expected(ok=False)
    probe: dict[str, Any] = json.loads(
        media.with_name(media.name + ".ffprobe.json").read_text(encoding="utf-8")
    )
    streams = probe.get("streams", [])
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        return Expected(ok=False)
    duration = probe.get("format", {}).get("duration")
    rate = video.get("avg_frame_rate", "0/0")
    num, _, den = rate.partition("/")
    rotation = next(
        (
            int(side["rotation"])
            for side in video.get("side_data_list", [])
            if "rotation" in side
        ),
        0,
    )
    return Expected(
        ok=True,
        width=video.get("width"),
        height=video.get("height"),
        video_codec=video.get("codec_name"),
        audio_codec=audio.get("codec_name") if audio else None,
        duration_s=(
            float(duration)
            if duration is not None and media.name not in GUESSED_DURATION
            else None
        ),
        frame_rate=(
            Fraction(int(num), int(den))
            if den not in ("", "0") and media.name not in GUESSED_FRAME_RATE
            else None
        ),
        rotation=rotation,
    )
