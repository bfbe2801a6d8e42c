"""Type stubs for the Rust extension ``reelwatch._core``.

Every function takes a whole batch, runs it on a thread pool with the GIL
released, and returns results in input order. A failure on one path is a
value in its result, never an exception; exceptions are raised only for
arguments of the wrong type (``TypeError``) or invalid ignore patterns
(``ValueError``).

Paths are accepted as ``str``, ``bytes`` or ``os.PathLike``; ``str`` is
encoded with the file system encoding and ``surrogateescape``, like
``os.fsencode``. Paths in results are always ``bytes``, so names that are not
valid UTF-8 round-trip without loss (decode them with ``os.fsdecode``).
"""

import os
from collections.abc import Iterable, Sequence
from typing import Any, final

__all__ = [
    "ProbeResult",
    "WATCH_CHANGE_KINDS",
    "WalkResult",
    "Watcher",
    "check_paths",
    "fingerprint",
    "probe_many",
    "probe_many_rows",
    "walk",
    "__version__",
]

__version__: str

_Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]

@final
class ProbeResult:
    """What a header probe found in one file.

    ``ok`` is False when ``error_kind`` is set; the media fields are then None
    (or 0 for the stream counts). Codec and profile names are ffprobe 5.1's
    ``codec_name`` and ``profile``.
    """

    path: bytes
    """The path as given, encoded to bytes."""
    ok: bool
    error_kind: str | None
    """One of: unsupported, corrupt, incomplete, no_video, empty, not_found,
    permission_denied, not_a_file, invalid_path, outside_roots, io, internal."""
    error: str | None
    """A lowercase message saying what was wrong, for people."""
    bytes_read: int
    """Bytes this probe read from the file."""
    size: int
    """The file's size in bytes when it was opened (0 if it was not)."""
    container: str | None
    """Short container name: mp4, mov, m4v, 3gp, matroska, webm, avi, ..."""
    format_name: str | None
    """ffprobe's ``format_name``, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``."""
    duration_s: float | None
    width: int | None
    height: int | None
    rotation: int | None
    """Display rotation in degrees, counter-clockwise positive (ffprobe's sign)."""
    frame_rate: tuple[int, int] | None
    """Average frame rate as (numerator, denominator), like ffprobe's
    ``avg_frame_rate``."""
    video_codec: str | None
    video_profile: str | None
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    bit_rate: int | None
    """Overall bit rate in bits per second."""
    video_streams: int
    """Video streams, cover art excluded."""
    audio_streams: int
    subtitle_streams: int
    complete: bool
    """False when the container's structures run past the end of the file:
    still being copied, or cut short."""
    stat_after: tuple[int, int, int, int, int] | None
    """(size, mtime_ns, ctime_ns, inode, device) of the opened file, from
    ``fstat`` after the probe (and the fingerprint) read it; None when the
    file could not be opened. Equal to the stat taken before the call, it
    shows that the file did not change while it was read."""
    fingerprint: bytes | None
    """The content fingerprint, as :func:`fingerprint` computes it, read
    through the same descriptor; None unless ``probe_many`` was called with
    ``fingerprint=True`` and the file could be opened and read."""

@final
class WalkResult:
    """The regular files, per-path errors and directory count of one walk.

    The rows of ``files`` and ``errors`` are built anew on each access.
    """

    @property
    def files(self) -> list[tuple[bytes, int, int, int, int, int]]:
        """(path, size, mtime_ns, ctime_ns, inode, device), sorted by path."""
    @property
    def errors(self) -> list[tuple[bytes, str, str]]:
        """(path, error_kind, message) for paths that could not be listed and
        for symlinks skipped because they resolve outside the allowed roots."""
    @property
    def file_count(self) -> int:
        """The number of rows in ``files``, without building them."""
    @property
    def dirs(self) -> int:
        """Directories entered, the root included."""
    def compare(
        self, known: Iterable[Sequence[Any]], stale: Iterable[int] = ...
    ) -> tuple[list[tuple[bytes, int, int, int, int, int]], list[int]]:
        """Compare the walk's files with cataloged files, with the GIL released.

        Args:
            known: Rows that start with (path, size, mtime_ns, ctime_ns,
                inode, device); the path is bytes, str or os.PathLike, and
                later items are ignored. When a path occurs twice, the last
                row counts.
            stale: Indexes into ``known`` of rows whose files count as
                changed even when their stat matches.

        Returns:
            Two lists. The first contains, in path order, the rows of
            ``files`` (same shape) without a row in ``known`` of the same
            path and stat, or whose row is stale. The second contains the
            indexes of the rows of ``known`` whose path the walk did not
            list, in input order.

        Raises:
            ValueError: An index in ``stale`` is out of range.
        """

def probe_many(
    paths: Iterable[_Path],
    *,
    roots: Iterable[_Path] | None = None,
    threads: int = 0,
    fingerprint: bool = False,
) -> list[ProbeResult]:
    """Probe each file's container headers, reading a few KiB per file.

    Args:
        paths: The files to probe.
        roots: When given, a file whose real path (checked on the opened
            descriptor, so after symlinks) is not under one of these
            directories fails with ``outside_roots`` before anything is read.
            Without roots, a path that is itself a symlink fails with
            ``not_a_file``.
        threads: Worker threads; 0 uses one per CPU.
        fingerprint: Also compute each file's content fingerprint (reading
            up to 128 KiB more), through the descriptor the probe used.

    Returns:
        One result per path, in input order.
    """

_ProbeRow = tuple[
    str, bool, str | None, str | None, int, int, str | None, str | None,
    float | None, int | None, int | None, int | None, str | None, str | None,
    str | None, str | None, int | None, int | None, int | None, int, int, int,
    bool, tuple[int, int, int, int, int] | None, str | None,
]  # fmt: skip

def probe_many_rows(
    paths: Iterable[_Path],
    *,
    roots: Iterable[_Path] | None = None,
    threads: int = 0,
    fingerprint: bool = False,
) -> list[_ProbeRow]:
    """Probe like :func:`probe_many` and return plain tuples instead.

    Each tuple contains the fields of :class:`ProbeResult` in the order of
    the daemon's ``reelwatch.core.ProbeResult`` (path, ok, error_kind,
    error, size, bytes_read, then as declared above), with the path as str
    (decoded like :func:`os.fsdecode`), the frame rate as ``"num/den"`` and
    the fingerprint as 32 hex digits, so the daemon builds its struct from
    a tuple in one call.
    """

def walk(
    root: _Path,
    *,
    extensions: Iterable[str],
    ignore: Iterable[str] = ...,
    allowed_roots: Iterable[_Path] | None = None,
) -> WalkResult:
    """List the regular files under ``root`` whose extension is wanted.

    Args:
        root: The directory to walk.
        extensions: Extensions with or without the dot, matched
            case-insensitively (``["mkv", ".MP4"]``).
        ignore: Glob patterns matched against each file and directory name
            (not the whole path); a matching directory is not entered.
        allowed_roots: Directories that symlinks may lead into; a symlink
            resolving elsewhere is reported in ``errors`` as
            ``outside_roots`` and not followed. Empty or None means the walk
            root alone.

    Returns:
        The files found, the per-path errors and the number of directories.

    Raises:
        ValueError: An ignore pattern is not a valid glob.
    """

def fingerprint(
    paths: Iterable[_Path], *, threads: int = 0
) -> list[tuple[bytes | None, str | None]]:
    """Compute partial-content fingerprints to recognise moved files.

    The digest is XXH3-128 (16 bytes) over the size and the first and last
    64 KiB. Symlinks are not followed; pass resolved paths.

    Returns:
        (digest, None) or (None, "error_kind: message") per path, in input
        order.
    """

def check_paths(
    paths: Iterable[_Path], roots: Iterable[_Path]
) -> list[tuple[bytes | None, str | None, str | None]]:
    """Check paths: syntax, symlink resolution and containment under roots.

    A path is rejected with ``invalid_path`` when it is empty, contains a NUL
    byte or exceeds PATH_MAX (4096) or NAME_MAX (255) for a component. It is
    then resolved (a path that does not exist resolves its longest existing
    parent) and compared with the resolved roots by whole components, so
    ``/media/tv-old`` is not under ``/media/tv``. An empty ``roots`` allows
    nothing.

    Returns:
        (resolved_path, error_kind, message) per path, in input order;
        resolved_path is set whenever resolution worked, also for
        ``outside_roots``.
    """

# --- Watcher -------------------------------------------------------------

WATCH_CHANGE_KINDS: tuple[str, ...]
"""Every change kind ``Watcher.wait`` returns, in a fixed order."""

@final
class Watcher:
    """Watch scan roots recursively and return coalesced batches of changes.

    Each root gets its own inotify instance, or a poller when inotify cannot
    cover it (``force_polling``, NFS/SMB/FUSE and similar filesystems, or the
    inotify watch limit reached). Symlinks below a root are not followed.
    Nothing is lost silently: a kernel queue overflow, a folder that could not
    be watched or a batch grown past ``max_pending`` entries becomes a
    ``rescan`` change, and a root that vanishes is reported and watched again
    once it is back.

    Raises:
        ValueError: no roots, a relative or overlapping root, an invalid
            ignore pattern, or a zero interval.
        TypeError: a root that is not str, bytes or os.PathLike.
    """

    def __new__(
        cls,
        roots: Iterable[_Path],
        *,
        ignore: Iterable[str] = ...,
        poll_interval_ms: int = 10_000,
        debounce_ms: int = 1_600,
        step_ms: int = 50,
        settled_step_ms: int = 5,
        root_check_interval_ms: int = 1_000,
        force_polling: bool = False,
        max_pending: int = 50_000,
    ) -> Watcher:
        """Install the watches, blocking with the GIL released while roots are walked.

        ``ignore`` holds globs: one without ``/`` matches any name below a
        root (``.*``, ``*.part``), one with ``/`` matches the path relative to
        the root. ``poll_interval_ms`` is the time between two scans of a
        polled root; ``root_check_interval_ms`` the time between two checks
        that each root is still the same folder.
        """

    def wait(
        self, timeout_ms: int
    ) -> list[tuple[str, bytes, bytes | None, str | None]]:
        """Block, with the GIL released, until a batch is ready.

        Returns ``[]`` when ``timeout_ms`` passes with no change. Once a change
        has arrived, the batch is returned after ``step_ms`` without another
        change, or ``debounce_ms`` after its first change. A batch of at most
        32 entries, all of them renames, files or folders moved in and rescans
        (no creation, write or removal, and no rename still waiting for its
        second half), is returned after ``settled_step_ms`` instead. Each
        item is
        ``(kind, path, target, message)``: ``target`` is the new path of a
        ``renamed``; ``message`` is the reason of a ``rescan`` or the text of
        a ``watch_error``, ``root_missing`` or ``unmounted``. Kinds:
        ``created``, ``modified``, ``closed_write``, ``removed``, ``renamed``,
        ``rescan``, ``watch_error``, ``root_missing``, ``unmounted``.

        Raises:
            RuntimeError: the watcher is closed.
            KeyboardInterrupt: or any exception a signal handler raises;
                signals are checked every 100 ms.
        """

    def roots(self) -> list[tuple[bytes, str, str | None]]:
        """Return ``(path, state, message)`` per root; state is ``watching``,
        ``polling``, ``missing`` or ``error``."""

    def close(self) -> None:
        """Stop every backend thread; later ``wait`` calls raise RuntimeError."""

    def __enter__(self) -> Watcher: ...
    def __exit__(self, *args: object) -> None: ...
    def _debug_inject(self, fault: str, *, root: int | None = None) -> None:
        """For tests only: simulate ``overflow`` (of one root index or all),
        ``watch_limit`` (root index, default 0), or ``pause``/``resume`` taking
        events from inotify so a burst overflows the kernel queue for real."""
