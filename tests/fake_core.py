"""A pure-Python stand-in for the Rust core, working on real files.

Fake videos are real files whose content sets what the probe returns:

* ``FAKEVIDEO {json}``: a video; the JSON object sets ProbeResult fields.
* ``PARTIAL...``: a container cut short (``incomplete``).
* empty: ``empty``; anything else: ``unsupported``.

:func:`write_fake_video` writes the first kind.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec

from reelwatch.core import (
    Fingerprint,
    KnownFiles,
    PathCheck,
    ProbeResult,
    WalkComparison,
    WalkEntry,
    WalkError,
    WalkResult,
)
from reelwatch.errors import single_error

FAKE_MAGIC = b"FAKEVIDEO "

DEFAULT_FAKE_METADATA: dict[str, Any] = {
    "container": "mp4",
    "duration_s": 12.5,
    "width": 1920,
    "height": 1080,
    "frame_rate": "25/1",
    "video_codec": "h264",
    "audio_codec": "aac",
}


def write_fake_video(path: Path, **metadata: Any) -> Path:
    """Write a fake video whose probe returns ``metadata`` over the defaults."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {**DEFAULT_FAKE_METADATA, **metadata}
    path.write_bytes(FAKE_MAGIC + msgspec.json.encode(fields))
    return path


class FakeCore:
    """Implements :class:`reelwatch.core.Core` with os calls; records each call."""

    def __init__(self) -> None:
        self.probed: list[list[str]] = []
        self.walked: list[str] = []

    @property
    def probed_paths(self) -> list[str]:
        """Every path probed so far, in order."""
        return [path for batch in self.probed for path in batch]

    async def probe(
        self,
        paths: Sequence[str],
        *,
        roots: Sequence[str] | None = None,
        fingerprint: bool = False,
    ) -> list[ProbeResult]:
        # Like a core without stat_after, so the scanner stats and
        # fingerprints these files itself.
        self.probed.append(list(paths))
        return await anyio.to_thread.run_sync(_probe_all, paths)

    async def walk(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
    ) -> WalkResult:
        self.walked.append(root)
        return await anyio.to_thread.run_sync(
            _walk, root, extensions, ignore, allowed_roots
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
        # Through self.walk, so that a test overriding walk changes this too.
        known = KnownFiles([])

        async def read() -> None:
            nonlocal known
            known = await read_known()

        with single_error():
            async with anyio.create_task_group() as group:
                group.start_soon(read)
                walk = await self.walk(
                    root,
                    extensions=extensions,
                    ignore=ignore,
                    allowed_roots=allowed_roots,
                )
        return _compare(walk, known)

    async def check_paths(
        self, paths: Sequence[str], roots: Sequence[str]
    ) -> list[PathCheck]:
        return await anyio.to_thread.run_sync(_check_paths, paths, roots)

    async def fingerprint(self, paths: Sequence[str]) -> list[Fingerprint]:
        return await anyio.to_thread.run_sync(_fingerprint, paths)


def _walk(
    root: str,
    extensions: Collection[str],
    ignore: Sequence[str],
    allowed_roots: Sequence[str],
) -> WalkResult:
    files: list[WalkEntry] = []
    errors: list[WalkError] = []
    dirs = 0

    def on_error(exc: OSError) -> None:
        kind = "permission_denied" if isinstance(exc, PermissionError) else "io"
        errors.append(WalkError(str(exc.filename), kind, exc.strerror or ""))

    for directory, subdirs, names in os.walk(root, onerror=on_error):
        dirs += 1
        subdirs[:] = sorted(d for d in subdirs if not _matches(d, ignore))
        for name in sorted(names):
            path = os.path.join(directory, name)
            extension = name.rpartition(".")[2].lower()
            if _matches(name, ignore) or "." not in name:
                continue
            if extension not in extensions:
                continue
            if not _inside(os.path.realpath(path), allowed_roots):
                continue
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue  # deleted during the walk
            files.append(
                WalkEntry(
                    path,
                    info.st_size,
                    info.st_mtime_ns,
                    info.st_ctime_ns,
                    info.st_ino,
                    info.st_dev,
                )
            )
    return WalkResult(files, errors, dirs)


def _compare(walk: WalkResult, known: KnownFiles) -> WalkComparison:
    stale = set(known.stale)
    if any(index < 0 or index >= len(known.rows) for index in stale):
        raise ValueError(f"a stale index is out of range for {len(known.rows)} rows")
    rows = {}
    for index, row in enumerate(known.rows):
        rows[os.fsencode(row[0])] = (index, tuple(row[1:6]))
    walked = set()
    changed = []
    for entry in walk.files:
        path = os.fsencode(entry.path)
        walked.add(path)
        match = rows.get(path)
        if match is None or match[0] in stale or match[1] != tuple(entry[1:]):
            changed.append(entry)
    missing = [
        index
        for index, row in enumerate(known.rows)
        if os.fsencode(row[0]) not in walked
    ]
    unchanged = len(walk.files) - len(changed)
    return WalkComparison(changed, unchanged, missing, known, walk.errors, walk.dirs)


def _check_paths(paths: Sequence[str], roots: Sequence[str]) -> list[PathCheck]:
    checks = []
    for path in paths:
        if not path or "\0" in path:
            checks.append(PathCheck(path, None, "invalid_path", "invalid path"))
            continue
        resolved = os.path.realpath(path)
        if not _inside(resolved, roots):
            message = "outside the allowed roots"
            checks.append(PathCheck(path, None, "outside_roots", message))
        elif not os.path.exists(resolved):
            checks.append(PathCheck(path, None, "not_found", "no such file"))
        else:
            checks.append(PathCheck(path, resolved, None, None))
    return checks


def _fingerprint(paths: Sequence[str]) -> list[Fingerprint]:
    results = []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                digest = hashlib.sha256(stream.read(65536)).hexdigest()
        except OSError as exc:
            results.append(Fingerprint(path, None, str(exc)))
        else:
            results.append(Fingerprint(path, digest, None))
    return results


def _matches(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(
        path == root or path.startswith(root.rstrip("/") + "/") for root in roots
    )


def _probe_all(paths: Sequence[str]) -> list[ProbeResult]:
    return [_probe_one(path) for path in paths]


def _probe_one(path: str) -> ProbeResult:
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except FileNotFoundError:
        return _failure(path, "not_found", "no such file or directory")
    except PermissionError:
        return _failure(path, "permission_denied", "permission denied")
    except IsADirectoryError:
        return _failure(path, "not_a_file", "is a directory")

    if not content:
        return _failure(path, "empty", "the file is empty")
    if content.startswith(b"PARTIAL"):
        return _failure(path, "incomplete", "the container ends early")
    if not content.startswith(FAKE_MAGIC):
        return _failure(path, "unsupported", "unrecognised container")
    fields = msgspec.json.decode(content[len(FAKE_MAGIC) :])
    return ProbeResult(path=path, ok=True, size=len(content), **fields)


def _failure(path: str, kind: str, message: str) -> ProbeResult:
    return ProbeResult(path=path, ok=False, error_kind=kind, error=message)
