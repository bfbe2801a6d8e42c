"""Tests for loading the configuration file and the environment overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reelwatch.config import (
    DEFAULT_IGNORE_GLOBS,
    default_config_paths,
    load_config,
)
from reelwatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestLoadConfig:
    def test_relative_paths_resolve_against_file_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "conf" / "lib").mkdir(parents=True)
        path = write(
            tmp_path / "conf" / "reelwatch.toml",
            'allowed_scan_roots = ["lib"]\nstate_dir = "../state"\n',
        )
        monkeypatch.chdir("/")

        config = load_config(str(path), environ={})

        assert config.allowed_scan_roots == (str(tmp_path / "conf" / "lib"),)
        assert config.state_dir == str(tmp_path / "state")
        assert config.socket_path == str(tmp_path / "state" / "reelwatch.sock")
        assert config.database_path == str(tmp_path / "state" / "reelwatch.db")

    def test_defaults_for_sections(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.toml", 'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n'
        )

        config = load_config(str(path), environ={})

        assert config.socket.mode_bits == 0o600
        assert config.socket.max_line_bytes == 1_048_576
        assert config.socket.max_connections == 128
        assert config.scan.workers == 2
        assert config.scan.settle_s == 2.0
        assert config.scan.reconcile_interval_s == 3600.0
        assert "mkv" in config.scan.extensions
        assert config.scan.ignore_globs == DEFAULT_IGNORE_GLOBS
        assert config.log_format == "auto"

    def test_user_ignore_globs_add_to_builtin(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.toml",
            'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n'
            '[scan]\nignore = ["Samples"]\nvideo_extensions = ["MKV"]\n',
        )

        config = load_config(str(path), environ={})

        assert config.scan.ignore_globs == (*DEFAULT_IGNORE_GLOBS, "Samples")
        assert config.scan.extensions == frozenset({"mkv"})

    def test_environment_overrides_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write(
            tmp_path / "c.toml",
            'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\nsocket_path = "x.sock"\n',
        )
        monkeypatch.chdir(tmp_path)
        environ = {
            "REELWATCH_CONFIG": str(path),
            "REELWATCH_ALLOWED_SCAN_ROOTS": os.pathsep.join(["a", "/media/b"]),
            "REELWATCH_STATE_DIR": "state",
            "REELWATCH_SOCKET": "run/rw.sock",
        }

        config = load_config(environ=environ)

        assert config.allowed_scan_roots == (str(tmp_path / "a"), "/media/b")
        assert config.state_dir == str(tmp_path / "state")
        assert config.socket_path == str(tmp_path / "run" / "rw.sock")

    def test_environment_alone_without_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        environ = {
            "XDG_CONFIG_HOME": str(tmp_path / "nothing-here"),
            "REELWATCH_ALLOWED_SCAN_ROOTS": "/media/tv",
            "REELWATCH_STATE_DIR": "/var/lib/reelwatch",
        }

        config = load_config(environ=environ)

        assert config.allowed_scan_roots == ("/media/tv",)
        assert config.socket_path == "/var/lib/reelwatch/reelwatch.sock"

    def test_roots_resolve_symlinks(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        path = write(
            tmp_path / "c.toml", 'allowed_scan_roots = ["link"]\nstate_dir = "s"\n'
        )

        config = load_config(str(path), environ={})

        assert config.allowed_scan_roots == (str(tmp_path / "real"),)

    def test_missing_root_is_not_an_error(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.toml", 'allowed_scan_roots = ["gone"]\nstate_dir = "s"\n'
        )

        config = load_config(str(path), environ={})

        assert config.allowed_scan_roots == (str(tmp_path / "gone"),)

    def test_default_config_paths_order(self) -> None:
        paths = default_config_paths({"XDG_CONFIG_HOME": "/home/u/.config"})

        assert paths == [
            "/home/u/.config/reelwatch/reelwatch.toml",
            "/etc/reelwatch/reelwatch.toml",
        ]

    def test_repository_default_config_loads(self) -> None:
        config = load_config(str(REPO / "config" / "reelwatch.toml"), environ={})

        assert config.allowed_scan_roots == (str((REPO / "library").resolve()),)
        assert config.state_dir == str(REPO / ".state")
        assert config.socket_path == str(REPO / ".state" / "reelwatch.sock")


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (
                'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n[scan]\nworkers = 0\n',
                r"c\.toml: invalid value for 'scan\.workers': found 0; "
                r"expected `int` >= 1",
            ),
            (
                'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n[scan]\nwrkers = 3\n',
                r"c\.toml: unknown key 'scan\.wrkers'",
            ),
            (
                'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n'
                '[scan]\nwatcher = "inotify"\n',
                r"c\.toml: invalid value for 'scan\.watcher': found 'inotify'; "
                r"expected one of 'core', 'watchfiles'",
            ),
            (
                'allowed_scan_roots = ["/srv", 3]\nstate_dir = "s"\n',
                r"c\.toml: invalid value for 'allowed_scan_roots\[1\]': found 3; "
                r"expected `str`",
            ),
            (
                'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\nlog_format = "xml"\n',
                r"invalid value for 'log_format': found 'xml'; expected one of",
            ),
            (
                'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n'
                '[socket]\nmode = "rw"\n',
                r"invalid value for 'socket\.mode': found 'rw'",
            ),
            (
                'allowed_scan_roots = []\nstate_dir = "s"\n',
                r"'allowed_scan_roots' is missing or empty",
            ),
            (
                'state_dir = "s"\n',
                r"'allowed_scan_roots' is missing or empty",
            ),
            (
                'allowed_scan_roots = ["/srv"]\n',
                r"'state_dir' is missing",
            ),
            (
                'allowed_scan_roots = ["/srv", "/srv/tv"]\nstate_dir = "s"\n',
                r"allowed_scan_roots\[1\] '/srv/tv' \(/srv/tv\) overlaps "
                r"allowed_scan_roots\[0\]",
            ),
            (
                "allowed_scan_roots = [\n",
                r"c\.toml: invalid TOML",
            ),
        ],
    )
    def test_bad_file_names_file_and_key(
        self, tmp_path: Path, body: str, message: str
    ) -> None:
        path = write(tmp_path / "c.toml", body)

        with pytest.raises(ConfigError, match=message):
            load_config(str(path), environ={})

    def test_sibling_with_shared_prefix_is_not_overlap(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.toml",
            'allowed_scan_roots = ["/media/tv", "/media/tv-old"]\nstate_dir = "s"\n',
        )

        config = load_config(str(path), environ={})

        assert config.allowed_scan_roots == ("/media/tv", "/media/tv-old")

    def test_named_file_missing(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"nope\.toml \(from --config\) does not"):
            load_config(str(tmp_path / "nope.toml"), environ={})

    def test_env_config_file_missing(self, tmp_path: Path) -> None:
        environ = {"REELWATCH_CONFIG": str(tmp_path / "nope.toml")}

        with pytest.raises(ConfigError, match=r"from REELWATCH_CONFIG\) does not"):
            load_config(environ=environ)

    def test_empty_env_roots(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "c.toml", 'allowed_scan_roots = ["/srv"]\nstate_dir = "s"\n'
        )
        environ = {"REELWATCH_ALLOWED_SCAN_ROOTS": os.pathsep}

        with pytest.raises(
            ConfigError, match="REELWATCH_ALLOWED_SCAN_ROOTS is set but names no"
        ):
            load_config(str(path), environ=environ)

    def test_no_file_and_no_environment(self, tmp_path: Path) -> None:
        environ = {"XDG_CONFIG_HOME": str(tmp_path)}
        if os.path.exists("/etc/reelwatch/reelwatch.toml"):
            pytest.skip("a system-wide /etc/reelwatch/reelwatch.toml exists here")

        with pytest.raises(ConfigError, match="'allowed_scan_roots' is missing"):
            load_config(environ=environ)
