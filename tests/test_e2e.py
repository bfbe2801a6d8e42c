"""End to end: the real daemon process catalogs real video files over its socket."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpus import SKIP_REASON, corpus_media_dir, expected_from_ffprobe
from daemon_process import running_daemon, wait_until

# Containers whose every field the core must read exactly as ffprobe does.
EXACT_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm"}
# Extensions the default configuration catalogs.
VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm", ".avi", ".ts", ".m2ts",
    ".mts", ".mpg", ".mpeg", ".vob", ".ogv", ".ogg", ".flv", ".wmv", ".asf",
}  # fmt: skip


@pytest.fixture
def corpus_media() -> Path:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    return media


def test_daemon_catalogs_corpus(tmp_path: Path, corpus_media: Path) -> None:
    """1. copy the corpus into a root; 2. start the daemon; 3. wait for idle;
    4. compare every catalog entry with ffprobe's values; 5. the daemon still serves.
    """
    root = tmp_path / "library"
    root.mkdir()
    copied = []
    for media in sorted(corpus_media.iterdir()):
        if media.name.endswith((".ffprobe.json", ".ffprobe.err")):
            continue
        shutil.copyfile(media, root / media.name)
        if media.suffix.lower() in VIDEO_EXTENSIONS:
            copied.append(media)

    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle(timeout_s=120)
        by_name = {Path(v["path"]).name: v for v in daemon.videos()}

        assert sorted(by_name) == sorted(m.name for m in copied)
        for media in copied:
            video = by_name[media.name]
            expected = expected_from_ffprobe(media)
            exact = media.suffix.lower() in EXACT_EXTENSIONS
            if not expected.ok:
                assert video["error"], (
                    f"{media.name}: ffprobe fails, catalog has no error"
                )
                continue
            if not exact and video["error"]:
                continue  # e.g. a header stub whose movie data is missing
            assert video["error"] is None, f"{media.name}: {video['error']}"
            assert video["width"] == expected.width, media.name
            assert video["height"] == expected.height, media.name
            assert video["video_codec"] == expected.video_codec, media.name
            assert video["audio_codec"] == expected.audio_codec, media.name
            if expected.duration_s is not None:
                assert video["duration_s"] == pytest.approx(
                    expected.duration_s, abs=0.1
                ), media.name
            assert video["size"] == media.stat().st_size, media.name

        status = daemon.call("status")
        assert status["videos"] == len(copied)
        assert [(r["path"], r["state"]) for r in status["roots"]] == [
            (str(root), "watching")
        ]


def test_daemon_follows_add_and_delete(tmp_path: Path, corpus_media: Path) -> None:
    """A file copied in while the daemon runs appears; deleted, it disappears."""
    root = tmp_path / "library"
    root.mkdir()
    source = corpus_media / "flower.mp4"

    with running_daemon(tmp_path / "run", [root]) as daemon:
        daemon.wait_idle()
        assert daemon.videos() == []

        target = root / "new clip.mp4"
        shutil.copyfile(source, target)
        wait_until(lambda: len(daemon.videos()) == 1, timeout_s=30, what="the new file")
        (video,) = daemon.videos()
        expected = expected_from_ffprobe(source)
        assert video["path"] == str(target)
        assert video["video_codec"] == expected.video_codec
        assert video["audio_codec"] == expected.audio_codec
        assert video["width"] == expected.width
        assert video["duration_s"] == pytest.approx(expected.duration_s, abs=0.1)

        target.unlink()
        wait_until(lambda: daemon.videos() == [], timeout_s=30, what="the removal")
        assert daemon.call("status")["videos"] == 0
