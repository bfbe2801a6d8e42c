"""Loading and validating the daemon's configuration (TOML plus environment overrides).

Paths in a configuration file are resolved against the folder that contains the
file, so the same file works from any working directory. Paths given through
environment variables are resolved against the current working directory.
Scan roots are then resolved to their real path (symlinks followed), because
containment checks compare real paths.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from .errors import ConfigError

__all__ = [
    "DEFAULT_IGNORE_GLOBS",
    "DEFAULT_VIDEO_EXTENSIONS",
    "ENV_ALLOWED_SCAN_ROOTS",
    "ENV_CONFIG",
    "ENV_SOCKET",
    "ENV_STATE_DIR",
    "Config",
    "ScanConfig",
    "SocketConfig",
    "default_config_paths",
    "load_config",
    "load_socket_path",
]

ENV_CONFIG = "REELWATCH_CONFIG"
ENV_ALLOWED_SCAN_ROOTS = "REELWATCH_ALLOWED_SCAN_ROOTS"
ENV_STATE_DIR = "REELWATCH_STATE_DIR"
ENV_SOCKET = "REELWATCH_SOCKET"

DEFAULT_VIDEO_EXTENSIONS = (
    "mp4",
    "m4v",
    "mov",
    "3gp",
    "mkv",
    "webm",
    "avi",
    "ts",
    "m2ts",
    "mts",
    "mpg",
    "mpeg",
    "vob",
    "ogv",
    "ogg",
    "flv",
    "wmv",
    "asf",
)

# Matched against every path component below a root: hidden files and folders,
# partial downloads and editor backups, NAS metadata folders.
DEFAULT_IGNORE_GLOBS = (
    ".*",
    "*.part",
    "*.crdownload",
    "*.tmp",
    "*.!qB",
    "*~",
    "@eaDir",
    ".Trash-*",
)

_DB_FILE_NAME = "reelwatch.db"
_SOCKET_FILE_NAME = "reelwatch.sock"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]
WatcherKind = Literal["core", "watchfiles"]
_CHOICES = {
    "log_level": get_args(LogLevel),
    "log_format": get_args(LogFormat),
    "scan.watcher": get_args(WatcherKind),
}

Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
FileMode = Annotated[str, msgspec.Meta(pattern=r"^0?[0-7]{3}$")]
Extension = Annotated[str, msgspec.Meta(pattern=r"^[^./\s][^/\s]*$")]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every configuration struct: immutable, and a typo is an error."""


class SocketConfig(_Section, frozen=True):
    """The control socket's permissions and limits."""

    mode: FileMode = "0600"
    group: str | None = None
    # Members of this group may call scan, rescan and job.cancel, besides
    # root and the daemon's own user.
    control_group: str | None = None
    max_line_bytes: Positive = 1_048_576
    max_connections: Positive = 128
    max_requests_in_flight: Positive = 32
    max_batch_requests: Positive = 100
    # Unread notifications a subscriber may have before it is disconnected.
    max_subscription_backlog: Positive = 1000
    idle_timeout_s: PositiveFloat = 300.0

    @property
    def mode_bits(self) -> int:
        """The permission bits of ``mode`` as an integer (``"0600"`` is ``0o600``)."""
        return int(self.mode, 8)


class ScanConfig(_Section, frozen=True):
    """Scan settings: video extensions, ignore globs, workers and timing."""

    video_extensions: tuple[Extension, ...] = DEFAULT_VIDEO_EXTENSIONS
    # Globs added to DEFAULT_IGNORE_GLOBS, which always apply.
    ignore: tuple[str, ...] = ()
    workers: Positive = 2
    job_timeout_s: PositiveFloat = 3600.0
    settle_s: NonNegativeFloat = 2.0
    probe_batch_size: Positive = 256
    reconcile_interval_s: NonNegativeFloat = 3600.0
    finished_jobs_keep: Annotated[int, msgspec.Meta(ge=0)] = 1000
    finished_jobs_max_age_s: NonNegativeFloat = 7 * 24 * 3600.0
    force_polling: bool = False
    # Seconds between two walks of a polled root (forced, on a network or FUSE
    # filesystem, or after the inotify watch limit was reached).
    poll_interval_s: Annotated[float, msgspec.Meta(ge=0.1)] = 10.0
    # "core": the Rust core's watcher, which reports lost events and falls
    # back to polling per root; "watchfiles": the watchfiles package.
    watcher: WatcherKind = "core"

    @property
    def ignore_globs(self) -> tuple[str, ...]:
        """The built-in ignore globs followed by the configured ones."""
        return DEFAULT_IGNORE_GLOBS + tuple(g for g in self.ignore if g)

    @property
    def extensions(self) -> frozenset[str]:
        """The video extensions in lower case, without dots."""
        return frozenset(ext.lower() for ext in self.video_extensions)


class Config(_Section, frozen=True):
    """The daemon's whole configuration after overrides and path resolution.

    ``allowed_scan_roots`` are absolute real paths, none inside another.
    ``socket_path`` defaults to ``reelwatch.sock`` in ``state_dir``.
    """

    allowed_scan_roots: tuple[str, ...]
    state_dir: str
    socket_path: str
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    socket: SocketConfig = SocketConfig()
    scan: ScanConfig = ScanConfig()

    @property
    def database_path(self) -> str:
        """The SQLite catalog file inside ``state_dir``."""
        return os.path.join(self.state_dir, _DB_FILE_NAME)


class _FileConfig(_Section, frozen=True):
    """The file's shape: like Config, but every path optional until overrides apply."""

    allowed_scan_roots: list[str] | None = None
    state_dir: str | None = None
    socket_path: str | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    socket: SocketConfig = SocketConfig()
    scan: ScanConfig = ScanConfig()


def default_config_paths(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the files searched when no configuration file is named, in order.

    ``$XDG_CONFIG_HOME/reelwatch/reelwatch.toml`` (``~/.config`` when the
    variable is unset or empty), then ``/etc/reelwatch/reelwatch.toml``.
    """
    config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config"
    )
    return [
        os.path.join(config_home, "reelwatch", "reelwatch.toml"),
        "/etc/reelwatch/reelwatch.toml",
    ]


def load_config(
    path: str | None = None, environ: Mapping[str, str] = os.environ
) -> Config:
    """Load the configuration and apply the environment overrides.

    The file is ``path`` when given, else ``$REELWATCH_CONFIG``, else the first
    of :func:`default_config_paths` that exists. Without any file, the
    environment alone must name the scan roots and the state folder.

    Raises:
        ConfigError: the file cannot be read or is invalid, an override is
            invalid, or no scan root or state folder is configured.
    """
    file_path = _choose_file(path, environ)
    if file_path is None:
        file_config = _FileConfig()
        base_dir = os.getcwd()
        source = "the environment"
    else:
        file_config = _read_file(file_path)
        base_dir = os.path.dirname(file_path)
        source = file_path

    roots = _resolve_roots(file_config, base_dir, environ, source)
    state_dir = _resolve_state_dir(file_config, base_dir, environ, source)
    socket_path = _resolve_socket_path(file_config, base_dir, state_dir, environ)
    return Config(
        allowed_scan_roots=roots,
        state_dir=state_dir,
        socket_path=socket_path,
        log_level=file_config.log_level,
        log_format=file_config.log_format,
        socket=file_config.socket,
        scan=file_config.scan,
    )


def load_socket_path(
    path: str | None = None, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Return the control socket that the configuration names, for clients.

    The file is chosen as in :func:`load_config`, but only ``socket_path`` and
    ``state_dir`` are read, because clients need neither the scan roots nor
    the database. The socket is ``$REELWATCH_SOCKET``, else ``socket_path``,
    else ``reelwatch.sock`` in ``$REELWATCH_STATE_DIR`` or ``state_dir``, as
    the daemon resolves it. Returns None when none of these is set, as in a
    file installed for systemd, whose units pass both through the
    environment.

    Raises:
        ConfigError: the named file is missing, unreadable or invalid.
    """
    from_env = environ.get(ENV_SOCKET)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    file_path = _choose_file(path, environ)
    file_config = _FileConfig() if file_path is None else _read_file(file_path)
    base_dir = os.getcwd() if file_path is None else os.path.dirname(file_path)
    if file_config.socket_path:
        return _absolute(file_config.socket_path, base_dir)
    state_dir = environ.get(ENV_STATE_DIR)
    if state_dir:
        return os.path.join(
            os.path.abspath(os.path.expanduser(state_dir)), _SOCKET_FILE_NAME
        )
    if file_config.state_dir:
        return os.path.join(
            _absolute(file_config.state_dir, base_dir), _SOCKET_FILE_NAME
        )
    return None


def _choose_file(path: str | None, environ: Mapping[str, str]) -> str | None:
    if path is not None:
        return _require_file(os.path.abspath(path), "--config")
    from_env = environ.get(ENV_CONFIG)
    if from_env:
        return _require_file(os.path.abspath(from_env), ENV_CONFIG)
    for candidate in default_config_paths(environ):
        if os.path.isfile(candidate):
            return candidate
    return None


def _require_file(path: str, named_by: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(
            f"configuration file {path} (from {named_by}) does not exist or is not "
            "a file; create it or name another one"
        )
    return path


def _read_file(path: str) -> _FileConfig:
    try:
        with open(path, "rb") as stream:
            raw = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration file {path}: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file before parsing, so this is raised
        # for any byte sequence that is not UTF-8.
        raise ConfigError(
            f"{path}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); TOML files must be UTF-8, so convert it with iconv"
        ) from None

    try:
        return msgspec.convert(raw, _FileConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe_validation_error(path, raw, exc)) from None


_ERROR_PATH = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _describe_validation_error(
    path: str, raw: dict[str, Any], exc: msgspec.ValidationError
) -> str:
    """Build one message: the file, the key, the value found, what was expected."""
    match = _ERROR_PATH.match(str(exc))
    what = match.group("what") if match else str(exc)
    json_path = match.group("path") if match and match.group("path") else ""
    key = _key_from_json_path(json_path)

    unknown = re.match(r"Object contains unknown field `(?P<field>[^`]+)`", what)
    if unknown:
        field = f"{key}.{unknown['field']}" if key else unknown["field"]
        return f"{path}: unknown key '{field}'; check its spelling or remove it"

    if not key:
        return f"{path}: {what}"

    found = _lookup(raw, json_path)
    expected = _lowercase(what)
    if key in _CHOICES:
        expected = "expected one of " + ", ".join(repr(c) for c in _CHOICES[key])
    return f"{path}: invalid value for '{key}': found {found!r}; {expected}"


def _key_from_json_path(json_path: str) -> str:
    # msgspec writes `$.scan.workers` and `$.allowed_scan_roots[1]`.
    return json_path.removeprefix(".")


def _lookup(raw: Any, json_path: str) -> Any:
    value = raw
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", json_path):
        try:
            value = value[name] if name else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _lowercase(text: str) -> str:
    return text[:1].lower() + text[1:]


def _split_env_paths(name: str, value: str) -> list[str]:
    paths = [part for part in value.split(os.pathsep) if part]
    if not paths:
        raise ConfigError(
            f"{name} is set but names no directory; set it to one or more "
            f"directories separated by '{os.pathsep}', or unset it"
        )
    return paths


def _resolve_roots(
    file_config: _FileConfig,
    base_dir: str,
    environ: Mapping[str, str],
    source: str,
) -> tuple[str, ...]:
    from_env = environ.get(ENV_ALLOWED_SCAN_ROOTS)
    if from_env is not None:
        key = ENV_ALLOWED_SCAN_ROOTS
        raw_roots = _split_env_paths(key, from_env)
        base = os.getcwd()
    else:
        key = "allowed_scan_roots"
        raw_roots = file_config.allowed_scan_roots or []
        base = base_dir

    if not raw_roots:
        raise ConfigError(
            f"{source}: 'allowed_scan_roots' is missing or empty; list at least "
            f"one directory to watch there or in {ENV_ALLOWED_SCAN_ROOTS}"
        )

    roots: list[str] = []
    for index, raw_root in enumerate(raw_roots):
        if not raw_root.strip():
            raise ConfigError(
                f"{source}: {key}[{index}] is an empty string; give a directory"
            )
        root = os.path.realpath(os.path.join(base, os.path.expanduser(raw_root)))
        for other_index, other in enumerate(roots):
            if _is_same_or_under(root, other) or _is_same_or_under(other, root):
                raise ConfigError(
                    f"{source}: {key}[{index}] '{raw_root}' ({root}) overlaps "
                    f"{key}[{other_index}] ({other}); roots must not contain each "
                    "other, so remove one"
                )
        roots.append(root)
    return tuple(roots)


def _resolve_state_dir(
    file_config: _FileConfig,
    base_dir: str,
    environ: Mapping[str, str],
    source: str,
) -> str:
    from_env = environ.get(ENV_STATE_DIR)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    if file_config.state_dir:
        return _absolute(file_config.state_dir, base_dir)
    raise ConfigError(
        f"{source}: 'state_dir' is missing; set it to the folder for the catalog "
        f"database, or set {ENV_STATE_DIR}"
    )


def _resolve_socket_path(
    file_config: _FileConfig,
    base_dir: str,
    state_dir: str,
    environ: Mapping[str, str],
) -> str:
    from_env = environ.get(ENV_SOCKET)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    if file_config.socket_path:
        return _absolute(file_config.socket_path, base_dir)
    return os.path.join(state_dir, _SOCKET_FILE_NAME)


def _absolute(path: str, base_dir: str) -> str:
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _is_same_or_under(path: str, root: str) -> bool:
    return path == root or Path(path).is_relative_to(root)


def roots_containing(path: str, roots: Sequence[str]) -> list[str]:
    """Return the roots that contain ``path`` by comparing whole components."""
    return [root for root in roots if _is_same_or_under(path, root)]
