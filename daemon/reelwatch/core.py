"""The typed, async facade over the Rust extension ``reelwatch._core``.

This is the only module that imports the extension. The rest of the daemon
depends on the :class:`Core` Protocol, so tests can pass a fake. Every call
hands one whole batch to a worker thread (``anyio.to_thread.run_sync``); the
extension releases the GIL while it reads files.

Paths cross as ``str``. Names that are not valid UTF-8 arrive from the
extension as bytes and are decoded with :func:`os.fsdecode`, whose surrogate
escapes turn back into the same bytes on the way in.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from types import ModuleType
from typing import Any, NamedTuple, Protocol

import anyio.to_thread
import msgspec

from .errors import DaemonError, single_error

__all__ = [
    "Core",
    "CoreUnavailableError",
    "Fingerprint",
    "KnownFiles",
    "PathCheck",
    "ProbeResult",
    "RustCore",
    "WalkComparison",
    "WalkEntry",
    "WalkError",
    "WalkResult",
    "load_core",
]


class CoreUnavailableError(DaemonError):
    """Raised when the compiled extension ``reelwatch._core`` cannot be imported."""


class ProbeResult(msgspec.Struct, frozen=True):
    """What the core read from one file's container headers.

    When ``ok`` is false, the media fields are null and ``error_kind`` is one
    of unsupported, corrupt, incomplete, no_video, empty, not_found,
    permission_denied, not_a_file, invalid_path, outside_roots, io or internal.
    ``frame_rate`` is a ``"num/den"`` string. The field order is the order
    of the core's ``probe_many_rows`` tuples, which are passed positionally.
    """

    path: str
    ok: bool
    error_kind: str | None = None
    error: str | None = None
    size: int | None = None
    bytes_read: int | None = None
    container: str | None = None
    format_name: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    frame_rate: str | None = None
    video_codec: str | None = None
    video_profile: str | None = None
    audio_codec: str | None = None
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    bit_rate: int | None = None
    video_streams: int = 0
    audio_streams: int = 0
    subtitle_streams: int = 0
    complete: bool = True
    # (size, mtime_ns, ctime_ns, inode, device) from fstat of the opened file
    # after the reads; None when it was not opened, or from a core without it.
    stat_after: tuple[int, int, int, int, int] | None = None
    # The content fingerprint (hex) when the probe was asked for it.
    fingerprint: str | None = None


class WalkEntry(NamedTuple):
    """A regular file found by a walk, with the stat fields the scanner compares."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int


class WalkError(NamedTuple):
    """A path the walk could not read; ``kind`` uses the probe's error kinds."""

    path: str
    kind: str
    message: str


class WalkResult(NamedTuple):
    """The files with a video extension under a directory, and what went wrong."""

    files: list[WalkEntry]
    errors: list[WalkError]
    dirs: int


class KnownFiles(NamedTuple):
    """Cataloged files to compare with a walk.

    Each row starts with (path, size, mtime_ns, ctime_ns, inode, device). The
    path is bytes as :func:`os.fsencode` returns it, or str. Later items are
    ignored. ``stale`` contains the indexes of rows whose files count as
    changed even when their stat matches.
    """

    rows: Sequence[Sequence[Any]]
    stale: Collection[int] = ()


class WalkComparison(NamedTuple):
    """A walk compared with the catalog's files for the walked tree.

    ``changed`` lists, in path order, the walked files without a matching
    row of ``known``: new files, files whose stat differs, and stale ones.
    ``unchanged`` counts the other walked files. ``missing`` holds the
    indexes of the rows whose path the walk did not list, in row order.
    """

    changed: list[WalkEntry]
    unchanged: int
    missing: list[int]
    known: KnownFiles
    errors: list[WalkError]
    dirs: int


class PathCheck(NamedTuple):
    """The outcome of checking one path against the allowed roots.

    ``resolved`` is the real path when the check passed. Otherwise
    ``error_kind`` (invalid_path, outside_roots, not_found, ...) and ``message``
    give the reason.
    """

    path: str
    resolved: str | None
    error_kind: str | None
    message: str | None


class Fingerprint(NamedTuple):
    """A partial-content digest of one file (hex), or the error that prevented it."""

    path: str
    digest: str | None
    error: str | None


class Core(Protocol):
    """The batch operations the daemon needs from the core."""

    async def probe(
        self,
        paths: Sequence[str],
        *,
        roots: Sequence[str] | None = None,
        fingerprint: bool = False,
    ) -> list[ProbeResult]:
        """Probe the container headers of every path, one result per path, in order.

        A file's failure is a result with ``ok`` false, never an exception.
        With ``fingerprint``, each opened file's content fingerprint is read
        through the same descriptor.
        """
        ...

    async def walk(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
    ) -> WalkResult:
        """List the regular files under ``root`` whose extension is in ``extensions``.

        Components that match a glob in ``ignore`` are skipped. Symlinks are
        followed only to targets inside ``allowed_roots``.
        """
        ...

    async def walk_compared(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
        read_known: Callable[[], Awaitable[KnownFiles]],
    ) -> WalkComparison:
        """Walk ``root`` as :meth:`walk` does and compare the files with ``read_known``.

        ``read_known`` runs while the walk does. A file matches a row of the
        same path when size, mtime, ctime, inode and device are equal and
        the row is not stale. Only the changed files become
        :class:`WalkEntry` objects.
        """
        ...

    async def check_paths(
        self, paths: Sequence[str], roots: Sequence[str]
    ) -> list[PathCheck]:
        """Resolve every path and check that it lies inside one of ``roots``."""
        ...

    async def fingerprint(self, paths: Sequence[str]) -> list[Fingerprint]:
        """Compute a partial-content digest of every path, in order."""
        ...


def load_core(*, threads: int = 0) -> RustCore:
    """Import the extension and wrap it.

    Raises:
        CoreUnavailableError: the extension is not built or does not load.
    """
    try:
        module = importlib.import_module("reelwatch._core")
    except ImportError as exc:
        raise CoreUnavailableError(
            f"the compiled core reelwatch._core cannot be imported ({exc}); build "
            "it with 'maturin develop' or install reelwatch with 'pip install .'"
        ) from exc
    return RustCore(module, threads=threads)


class RustCore:
    """The production :class:`Core`: each call runs one batch in a worker thread.

    ``threads`` caps the core's own reader threads per probe batch; 0 lets it
    choose.
    """

    # TODO: type ``module`` with the extension's stub instead of Any; remove
    # the importlib indirection once reelwatch/_core.pyi is committed.
    def __init__(self, module: ModuleType | Any, *, threads: int = 0) -> None:
        self._core: Any = module
        self._threads = threads

    async def probe(
        self,
        paths: Sequence[str],
        *,
        roots: Sequence[str] | None = None,
        fingerprint: bool = False,
    ) -> list[ProbeResult]:
        if not paths:
            return []
        path_list = list(paths)
        root_list = None if roots is None else list(roots)
        rows = await anyio.to_thread.run_sync(
            lambda: self._core.probe_many_rows(
                path_list,
                roots=root_list,
                threads=self._threads,
                fingerprint=fingerprint,
            )
        )
        return [ProbeResult(*row) for row in rows]

    async def walk(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
    ) -> WalkResult:
        extension_list = sorted(extensions)
        ignore_list = list(ignore)
        root_list = list(allowed_roots)
        raw = await anyio.to_thread.run_sync(
            lambda: self._core.walk(
                root,
                extensions=extension_list,
                ignore=ignore_list,
                allowed_roots=root_list,
            )
        )
        return WalkResult(_walk_entries(raw.files), _walk_errors(raw), int(raw.dirs))

    async def walk_compared(
        self,
        root: str,
        *,
        extensions: Collection[str],
        ignore: Sequence[str],
        allowed_roots: Sequence[str],
        read_known: Callable[[], Awaitable[KnownFiles]],
    ) -> WalkComparison:
        extension_list = sorted(extensions)
        ignore_list = list(ignore)
        root_list = list(allowed_roots)
        known = KnownFiles([])

        async def read() -> None:
            nonlocal known
            known = await read_known()

        with single_error():
            async with anyio.create_task_group() as group:
                group.start_soon(read)
                raw = await anyio.to_thread.run_sync(
                    lambda: self._core.walk(
                        root,
                        extensions=extension_list,
                        ignore=ignore_list,
                        allowed_roots=root_list,
                    )
                )
        stale = sorted(known.stale)
        changed, missing = await anyio.to_thread.run_sync(
            lambda: raw.compare(known.rows, stale)
        )
        return WalkComparison(
            _walk_entries(changed),
            int(raw.file_count) - len(changed),
            list(missing),
            known,
            _walk_errors(raw),
            int(raw.dirs),
        )

    async def check_paths(
        self, paths: Sequence[str], roots: Sequence[str]
    ) -> list[PathCheck]:
        if not paths:
            return []
        path_list = list(paths)
        root_list = list(roots)
        raw = await anyio.to_thread.run_sync(
            lambda: self._core.check_paths(path_list, root_list)
        )
        return [
            PathCheck(path, None if resolved is None else _decode(resolved), kind, msg)
            for path, (resolved, kind, msg) in zip(path_list, raw, strict=True)
        ]

    async def fingerprint(self, paths: Sequence[str]) -> list[Fingerprint]:
        if not paths:
            return []
        path_list = list(paths)
        raw = await anyio.to_thread.run_sync(lambda: self._core.fingerprint(path_list))
        return [
            Fingerprint(path, None if digest is None else bytes(digest).hex(), error)
            for path, (digest, error) in zip(path_list, raw, strict=True)
        ]


def _decode(path: bytes | str) -> str:
    return os.fsdecode(path)


def _walk_entries(rows: Any) -> list[WalkEntry]:
    return [
        WalkEntry(_decode(path), size, mtime_ns, ctime_ns, inode, device)
        for (path, size, mtime_ns, ctime_ns, inode, device) in rows
    ]


def _walk_errors(raw: Any) -> list[WalkError]:
    return [
        WalkError(_decode(path), kind, message) for (path, kind, message) in raw.errors
    ]
