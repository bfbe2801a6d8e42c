"""Media files for the benchmarks: the shared corpus, generated clips, big libraries.

Large libraries are hard links of a few dozen clips, so they cost almost no
disk space, and every read after the first of each clip comes from the page
cache, for the daemon and for the floor programs alike.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import REPO, say

from reelwatch.config import DEFAULT_VIDEO_EXTENSIONS

__all__ = [
    "VIDEO_EXTENSIONS",
    "build_library",
    "complete_videos",
    "copy_sources",
    "corpus_media_dir",
    "ensure_clips",
    "has_video_extension",
    "make_distinct_copies",
    "media_files",
]

VIDEO_EXTENSIONS = frozenset(DEFAULT_VIDEO_EXTENSIONS)

# Files of the corpus and of generate.sh that are not media.
_SIDECAR_SUFFIXES = (".ffprobe.json", ".ffprobe.err", ".tsv", ".md", ".sh")

# Sources copied into a library get this age, so that no file looks like one
# still being written (the daemon waits for writes to settle first).
_SOURCE_AGE_S = 3600.0


def corpus_media_dir() -> Path | None:
    """Return the shared corpus's media folder, or None when it is absent.

    The corpus is ``$REELWATCH_CORPUS`` or ``../shared/corpus`` beside the
    repository, as for the tests.
    """
    configured = os.environ.get("REELWATCH_CORPUS")
    base = Path(configured) if configured else REPO.parent / "shared" / "corpus"
    media = base / "media"
    return media if media.is_dir() else None


def ensure_clips(clips_dir: Path) -> Path | None:
    """Generate the synthetic clips into ``clips_dir`` unless an earlier run did.

    Returns the folder, or None when the corpus (and so generate.sh) is absent.
    The clips are kept between runs because generating them takes a minute
    or more.
    """
    if (clips_dir / "SUMMARY.tsv").is_file():
        return clips_dir
    media = corpus_media_dir()
    if media is None:
        return None
    script = media.parent / "generate.sh"
    partial = clips_dir.with_name(clips_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"generating clips with {script.name} (about a minute, kept for later runs)")
    completed = subprocess.run(
        ["bash", str(script), str(partial)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if not (partial / "SUMMARY.tsv").is_file():
        tail = completed.stdout.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{script} exited with {completed.returncode}:\n{tail}")
    if completed.returncode != 0:
        # Some encoders may be missing from this ffmpeg; the other clips serve.
        say(
            f"{script.name} exited with {completed.returncode}; using the clips it made"
        )
    partial.rename(clips_dir)
    return clips_dir


def media_files(folders: Iterable[Path]) -> list[Path]:
    """List the media files directly inside ``folders``, in name order."""
    files = []
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if (
                entry.is_file()
                and not entry.name.startswith(".")
                and not entry.name.endswith(_SIDECAR_SUFFIXES)
            ):
                files.append(entry)
    return files


def has_video_extension(path: Path) -> bool:
    """Tell whether the daemon's default extensions include this file's."""
    return path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS


def complete_videos(files: Sequence[Path]) -> list[Path]:
    """Keep the files with a video extension that the core reads as complete.

    Libraries are built from these only. The daemon re-probes a truncated
    file once more, in a job of its own, after the settle time, so a share
    of broken files would turn the first index into a measure of that retry.
    """
    import reelwatch._core as core

    videos = [path for path in files if has_video_extension(path)]
    probes = core.probe_many([str(path) for path in videos])
    return [
        path
        for path, probe in zip(videos, probes, strict=True)
        if probe.ok and probe.complete
    ]


def copy_sources(files: Sequence[Path], dest: Path) -> list[Path]:
    """Copy ``files`` into ``dest`` with an mtime an hour ago; return the copies.

    ``dest`` must be on the filesystem of the libraries that link to them.
    """
    dest.mkdir(parents=True, exist_ok=True)
    old = time.time() - _SOURCE_AGE_S
    copies = []
    for index, source in enumerate(files):
        copy = dest / f"{index:03d}_{source.name}"
        shutil.copyfile(source, copy)
        os.utime(copy, (old, old))
        copies.append(copy)
    return copies


def make_distinct_copies(source: Path, dest: Path, count: int) -> list[Path]:
    """Write ``count`` copies of one clip into ``dest``, each its own inode.

    A new hard link changes the ctime of its inode, and the daemon re-reads a
    file whose ctime moved during its probe. Files that each get linked once
    avoid measuring that retry instead of the event path.
    """
    dest.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    old = time.time() - _SOURCE_AGE_S
    copies = []
    for index in range(count):
        copy = dest / f"{index:05d}{source.suffix}"
        copy.write_bytes(data)
        os.utime(copy, (old, old))
        copies.append(copy)
    return copies


def build_library(
    root: Path, sources: Sequence[Path], *, files: int, folders: int
) -> list[Path]:
    """Fill ``root`` with ``files`` hard links of ``sources`` spread over ``folders``.

    Returns the folders, named ``d0000`` and up, each holding an equal share.
    """
    per_folder, extra = divmod(files, folders)
    cycle = itertools.cycle(sources)
    created = []
    for index in range(folders):
        folder = root / f"d{index:04d}"
        folder.mkdir(parents=True)
        for slot in range(per_folder + (1 if index < extra else 0)):
            source = next(cycle)
            os.link(source, folder / f"{slot:03d}_{source.name}")
        created.append(folder)
    return created
