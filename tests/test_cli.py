"""Tests of the reelwatch command: output, --json, exit statuses, socket choice."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelwatch.__main__ import main
from reelwatch.cli import (
    build_parser,
    escape_control,
    format_duration,
    format_frame_rate,
    format_size,
    format_status,
    format_table,
    resolve_socket_path,
)
from reelwatch.completion import COMMANDS
from reelwatch.events import SyncTimeoutError
from reelwatch.logs import configure_logging, reset_logging
from reelwatch.models import JobState, RootState, RootStatus, Status, Video
from rpc_doubles import FakeService, server_thread, short_socket_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Print times in UTC so the expected tables do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(autouse=True)
def quiet_server_logs() -> Iterator[None]:
    """Keep the in-process server's log lines out of the captured CLI output."""
    configure_logging("critical", "json", stream=io.StringIO())
    yield
    reset_logging()


@pytest.fixture
def sock_path() -> Iterator[Path]:
    with short_socket_dir() as directory:
        yield directory / "rw.sock"


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def served(sock_path: Path, service: FakeService) -> Iterator[Path]:
    with server_thread(service, sock_path):
        yield sock_path


def run_cli(
    capsys: pytest.CaptureFixture[str], socket_path: Path, *args: str
) -> tuple[int, str, str]:
    code = main(["--socket", str(socket_path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TestOutput:
    def test_status_table(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, served, "status")

        assert code == 0
        assert err == ""
        assert out.splitlines() == [
            "version   0.1.0",
            "idle      yes",
            "videos    3",
            "jobs      pending 0, running 0, complete 1, failed 1, timeout 0, "
            "cancelled 0",
            "settling  0",
            "probes    0",
            "",
            "ROOT               STATE     ERROR",
            "/srv/media/movies  watching",
            "/srv/media/tv      watching",
        ]

    def test_videos_table(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "videos")

        assert code == 0
        assert out.splitlines() == [
            "     SIZE  DURATION  RESOLUTION    FPS  VIDEO  AUDIO  PATH",
            "263.3 MiB      9:56  1920x1080      24  h264   aac    "
            "/srv/media/movies/big-buck-bunny.mp4",
            "  1.0 MiB         -  -               -  -      -      "
            "/srv/media/tv/show/notes.avi  (unsupported container: avi)",
            "700.0 MiB     23:42  1280x720    29.97  hevc   opus   "
            "/srv/media/tv/show/s01e01.mkv",
        ]

    def test_videos_limit_mentions_cursor(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "videos", "--limit", "1")

        assert code == 0
        assert len(out.splitlines()) == 3
        assert out.splitlines()[-1] == "(more videos: continue with --cursor 1)"

    def test_videos_under_is_made_absolute(
        self,
        served: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.chdir("/")

        code, out, _ = run_cli(
            capsys, served, "videos", "--under", "srv/media/tv", "--json"
        )

        assert code == 0
        paths = [video["path"] for video in json.loads(out)["videos"]]
        assert paths == [
            "/srv/media/tv/show/notes.avi",
            "/srv/media/tv/show/s01e01.mkv",
        ]

    def test_jobs_table(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, served, "jobs")

        assert code == 0
        assert out.splitlines() == [
            "ID  KIND  STATUS    CREATED               TOOK  PATH",
            " 2  scan  failed    2024-05-01 11:00:10  0.5 s  /srv/media/tv",
            " 1  scan  complete  2024-05-01 11:00:00  1.5 s  /srv/media/movies",
        ]

    def test_jobs_status_filter(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "jobs", "--status", "complete", "--json")

        assert code == 0
        assert [job["id"] for job in json.loads(out)["jobs"]] == [1]

    def test_job_detail(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, served, "job", "1")

        assert code == 0
        assert out.splitlines() == [
            "id        1",
            "kind      scan",
            "path      /srv/media/movies",
            "status    complete",
            "created   2024-05-01 11:00:00",
            "started   2024-05-01 11:00:00",
            "finished  2024-05-01 11:00:02",
            "took      1.5 s",
            "result    scanned 1, new 1, updated 0, removed 0, skipped 0, "
            "error count 0",
        ]

    def test_ping(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert run_cli(capsys, served, "ping") == (0, "pong\n", "")


class TestJson:
    def test_status_json(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "status", "--json")

        status = json.loads(out)
        assert code == 0
        assert status["videos"] == 3
        assert status["roots"][0] == {
            "path": "/srv/media/movies",
            "state": "watching",
            "error": None,
        }

    def test_json_before_command(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["--json", "--socket", str(served), "videos"])
        videos = json.loads(capsys.readouterr().out)

        assert code == 0
        assert videos["next_cursor"] is None
        assert [v["id"] for v in videos["videos"]] == [1, 3, 2]
        assert videos["videos"][2]["frame_rate"] == "30000/1001"

    def test_job_json(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, served, "job", "2", "--json")

        job = json.loads(out)
        assert code == 0
        assert job["status"] == "failed"
        assert (
            job["error"] == "scan root /srv/media/tv is not readable: Permission denied"
        )


class TestScan:
    def test_scan_queues(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "scan", "/srv/media/tv")

        assert code == 0
        assert out == (
            "queued job 3: scan /srv/media/tv (pending); "
            "follow it with 'reelwatch job 3'\n"
        )

    def test_scan_no_recursive(
        self, served: Path, service: FakeService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(
            capsys, served, "scan", "/srv/media/tv", "--no-recursive", "--json"
        )

        assert code == 0
        assert json.loads(out) == {
            "job_id": 3,
            "status": "pending",
            "path": "/srv/media/tv",
        }
        assert service.jobs[3].params == {"recursive": False}

    def test_scan_wait_prints_result(
        self, served: Path, service: FakeService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        service.finish_scans_after = 3

        code, out, err = run_cli(capsys, served, "scan", "/srv/media/tv", "--wait")

        assert code == 0
        # Without a terminal, progress is plain lines on stderr, one per change.
        assert err == "job 3: pending\njob 3: complete\n"
        assert "status    complete" in out
        assert "scanned 3, new 2, updated 0, removed 0, skipped 1, error count 1" in out
        assert "  /srv/media/tv/bad.mp4: corrupt header: moov box truncated" in out

    def test_scan_wait_failed_job_exits_4(
        self, served: Path, service: FakeService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        service.finish_scans_after = 1
        service.scan_outcome = JobState.TIMEOUT

        code, out, err = run_cli(
            capsys, served, "scan", "/srv/media/tv", "--wait", "--json"
        )

        assert code == 4
        assert json.loads(out)["status"] == "timeout"
        assert err == (
            "job 3: timeout\n"
            "reelwatch: job 3 ended with status timeout: scan timed out\n"
        )

    def test_scan_wait_timeout_exits_4(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(
            capsys, served, "scan", "/srv/media/tv", "--wait", "--timeout", "0.3"
        )

        assert code == 4
        assert out == ""
        assert err == (
            "job 3: pending\n"
            "reelwatch: job 3 is still pending after 0.3 s; "
            "check it later with 'reelwatch job 3'\n"
        )

    def test_relative_path_is_made_absolute(
        self,
        served: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.chdir("/")

        code, out, err = run_cli(capsys, served, "scan", "etc")

        assert code == 1
        assert "'/etc'" in err


class TestExitCodes:
    def test_daemon_error_exits_1(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, served, "job", "99")

        assert code == 1
        assert out == ""
        assert err.startswith("reelwatch: job 99 not found;")
        assert err.endswith("(error -32002)\n")

    def test_path_not_allowed_exits_1(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, served, "scan", "/etc")

        assert code == 1
        assert "'/etc' is not inside an allowed scan root" in err
        assert "(error -32001)" in err

    def test_not_running_exits_3(
        self, sock_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, sock_path, "status")

        assert code == 3
        assert out == ""
        assert err.startswith(
            "reelwatch: reelwatch daemon is not running: no socket at "
        )
        assert str(sock_path) in err
        assert err.count("\n") == 1

    @pytest.mark.parametrize(
        "args",
        [["jobs", "--limit", "0"], ["job", "x"], ["jobs", "--status", "done"], []],
    )
    def test_usage_error_exits_2(
        self, sock_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["--socket", str(sock_path), *args])

        assert exited.value.code == 2
        assert "usage: reelwatch" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["scan", ""], "path must not be empty"),
            (["video", ""], "path must not be empty"),
            (["videos", "--under", ""], "path must not be empty"),
            (["status", "--sync", "--sync-timeout", "1e9"], "at most 3600 seconds"),
            (["videos", "--sync-timeout", "inf"], "at most 3600 seconds"),
        ],
    )
    def test_argument_bounds_exit_2(
        self,
        sock_path: Path,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        message: str,
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["--socket", str(sock_path), *args])

        assert exited.value.code == 2
        assert message in capsys.readouterr().err

    def test_serve_takes_only_config(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--help"])
        help_text = capsys.readouterr().out

        assert exited.value.code == 0
        assert "--config" in help_text
        assert "--json" not in help_text
        assert "--socket" not in help_text

    def test_bad_config_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "bad.toml"
        config.write_text("allowed_scan_roots = 'not a list'\n")

        code = main(["--config", str(config), "status"])
        err = capsys.readouterr().err

        assert code == 2
        assert str(config) in err
        assert "allowed_scan_roots" in err

    def test_serve_bad_config_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "bad.toml"
        config.write_text("state_dir = 'state'\nallowed_scan_roots = []\n")

        code = main(["serve", "--config", str(config)])
        err = capsys.readouterr().err

        assert code == 2
        assert "allowed_scan_roots" in err
        assert "Traceback" not in err

    def test_subprocess_not_running_message(self, sock_path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "daemon")}
        env["REELWATCH_SOCKET"] = str(sock_path)

        done = subprocess.run(
            [sys.executable, "-m", "reelwatch", "status"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

        assert done.returncode == 3
        assert done.stdout == ""
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("reelwatch: reelwatch daemon is not running")


class TestSocketChoice:
    def test_option_wins(self) -> None:
        environ = {"REELWATCH_SOCKET": "/env.sock"}

        assert resolve_socket_path("/opt.sock", None, environ) == "/opt.sock"

    def test_environment_before_config(self, tmp_path: Path) -> None:
        environ = {"REELWATCH_SOCKET": "/env.sock", "REELWATCH_CONFIG": "/nope.toml"}

        assert resolve_socket_path(None, None, environ) == "/env.sock"

    def test_config_socket_path(self, tmp_path: Path) -> None:
        config = tmp_path / "reelwatch.toml"
        config.write_text(
            "allowed_scan_roots = ['lib']\nstate_dir = 'state'\n"
            "socket_path = 'run/rw.sock'\n"
        )
        environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}

        from_option = resolve_socket_path(None, str(config), environ)
        from_env = resolve_socket_path(
            None, None, {**environ, "REELWATCH_CONFIG": str(config)}
        )

        assert from_option == str(tmp_path / "run" / "rw.sock")
        assert from_env == from_option

    def test_default_config_file_is_read(self, tmp_path: Path) -> None:
        config_dir = tmp_path / "cfg" / "reelwatch"
        config_dir.mkdir(parents=True)
        (config_dir / "reelwatch.toml").write_text(
            "allowed_scan_roots = ['/srv']\nstate_dir = '/var/lib/reelwatch'\n"
        )
        environ = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}

        path = resolve_socket_path(None, None, environ)

        assert path == "/var/lib/reelwatch/reelwatch.sock"

    def test_fallback_to_runtime_dir(self, tmp_path: Path) -> None:
        environ = {
            "XDG_CONFIG_HOME": str(tmp_path / "empty"),
            "XDG_RUNTIME_DIR": str(tmp_path),
        }
        if os.path.isfile("/etc/reelwatch/reelwatch.toml"):
            pytest.skip("a system-wide /etc/reelwatch/reelwatch.toml takes precedence")

        path = resolve_socket_path(None, None, environ)

        assert path == str(tmp_path / "reelwatch" / "reelwatch.sock")


HOSTILE_NAME = "/srv/media/tv/a\x1b]0;owned\x07\nb\rc\td\u202ee\x9b.mkv"
HOSTILE_SHOWN = "/srv/media/tv/a\\x1b]0;owned\\x07\\nb\\rc\\td\\u202ee\\x9b.mkv"


class TestControlCharacters:
    """File names with terminal controls are escaped in tables, exact in JSON."""

    @pytest.fixture
    def hostile(self, service: FakeService) -> FakeService:
        service.add_video(
            Video(id=50, path=HOSTILE_NAME, size=10, mtime_ns=0, error="bad\x1b[2J")
        )
        return service

    def test_videos_table_escapes(
        self, hostile: FakeService, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "videos")

        assert code == 0
        assert "\x1b" not in out
        assert "\r" not in out
        assert "\x9b" not in out
        assert "\u202e" not in out
        assert len(out.splitlines()) == 5
        assert out.splitlines()[2].endswith(f"{HOSTILE_SHOWN}  (bad\\x1b[2J)")

    def test_video_detail_escapes(
        self, hostile: FakeService, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "video", HOSTILE_NAME)

        assert code == 0
        assert f"path        {HOSTILE_SHOWN}" in out.splitlines()
        assert "\x1b" not in out

    @pytest.mark.parametrize("option", ["--json", "--jsonl"])
    def test_json_keeps_exact_name(
        self,
        hostile: FakeService,
        served: Path,
        capsys: pytest.CaptureFixture[str],
        option: str,
    ) -> None:
        code, out, _ = run_cli(capsys, served, "videos", option)

        assert code == 0
        if option == "--json":
            paths = [video["path"] for video in json.loads(out)["videos"]]
        else:
            paths = [json.loads(line)["path"] for line in out.splitlines()]
        assert HOSTILE_NAME in paths

    def test_error_message_escapes(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, served, "video", "/etc/\x1b[31mred")

        assert code == 1
        assert "\x1b" not in err
        assert "/etc/\\x1b[31mred" in err
        assert len(err.splitlines()) == 1

    def test_escape_control_keeps_printable(self) -> None:
        assert (
            escape_control("caf\u00e9 \u65e5\u672c.mkv") == "caf\u00e9 \u65e5\u672c.mkv"
        )
        assert escape_control("a\\b") == "a\\b"
        assert escape_control("\x00\x7f") == "\\x00\\x7f"


def degraded_status() -> Status:
    return Status(
        version="0.1.0",
        idle=False,
        roots=[
            RootStatus(path="/srv/media/movies", state=RootState.WATCHING),
            RootStatus(
                path="/srv/media/usb", state=RootState.MISSING, error="not mounted"
            ),
        ],
        jobs={"pending": 2},
        videos=1200,
        settling=3,
        probes=45,
        config_error="/etc/reelwatch/reelwatch.toml: unknown key 'scna'",
        storage_error="database or disk is full",
    )


def test_status_table_shows_degraded_state() -> None:
    lines = format_status(degraded_status()).splitlines()

    assert lines == [
        "version        0.1.0",
        "idle           no",
        "videos         1,200",
        "jobs           pending 2",
        "settling       3",
        "probes         45",
        "config error   /etc/reelwatch/reelwatch.toml: unknown key 'scna' "
        "(old config kept)",
        "storage error  database or disk is full",
        "",
        "ROOT               STATE     ERROR",
        "/srv/media/movies  watching",
        "/srv/media/usb     missing   not mounted",
    ]


class TestInstalledConfig:
    """Client commands with the files that systemd/install.sh installs."""

    @pytest.fixture
    def runtime_dir(self) -> Iterator[Path]:
        with short_socket_dir() as directory:
            yield directory

    def install(self, destdir: Path, *options: str) -> Path:
        subprocess.run(
            ["bash", str(REPO / "systemd" / "install.sh"), *options],
            check=True,
            capture_output=True,
            env={**os.environ, "HOME": str(destdir / "home")},
            timeout=60,
        )
        return next(destdir.rglob("reelwatch.toml"))

    @pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
    def test_status_uses_runtime_socket(
        self,
        tmp_path: Path,
        runtime_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        user: bool,
    ) -> None:
        options = ["--user"] if user else []
        config = self.install(tmp_path, *options, "--destdir", str(tmp_path))
        for name in ("REELWATCH_SOCKET", "REELWATCH_STATE_DIR", "REELWATCH_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
        socket_path = runtime_dir / "reelwatch" / "reelwatch.sock"

        with server_thread(FakeService(), socket_path):
            code = main(["--config", str(config), "status"])
        captured = capsys.readouterr()

        assert "state_dir" not in tomllib.loads(config.read_text())
        assert captured.err == ""
        assert code == 0
        assert "/srv/media/tv" in captured.out

    def test_no_socket_key_falls_back_to_run(self, tmp_path: Path) -> None:
        config = tmp_path / "reelwatch.toml"
        config.write_text("allowed_scan_roots = ['/srv/media']\n")

        path = resolve_socket_path(None, str(config), {"HOME": str(tmp_path)})

        assert path == "/run/reelwatch/reelwatch.sock"

    def test_state_dir_environment_names_socket(self, tmp_path: Path) -> None:
        config = tmp_path / "reelwatch.toml"
        config.write_text("allowed_scan_roots = ['/srv/media']\n")
        environ = {"REELWATCH_STATE_DIR": str(tmp_path / "state")}

        path = resolve_socket_path(None, str(config), environ)

        assert path == str(tmp_path / "state" / "reelwatch.sock")

    def test_missing_config_names_environment(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("REELWATCH_SOCKET", raising=False)
        monkeypatch.setenv("REELWATCH_CONFIG", "/nonexistent.toml")

        code = main(["ping"])
        err = capsys.readouterr().err

        assert code == 2
        assert "/nonexistent.toml (from REELWATCH_CONFIG)" in err
        assert "--config" not in err

    @pytest.mark.parametrize("command", ["status", "serve"])
    def test_config_not_utf8_exits_2(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        command: str,
    ) -> None:
        monkeypatch.delenv("REELWATCH_SOCKET", raising=False)
        config = tmp_path / "bad.toml"
        config.write_bytes(b"\xff\xfe")

        code = main(["--config", str(config), command])
        err = capsys.readouterr().err

        assert code == 2
        assert err.startswith(f"reelwatch: {config}: not valid UTF-8")
        assert "offset 0" in err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (276134947, "263.3 MiB"),
        (5 * 1024**4, "5.0 TiB"),
        (None, "-"),
    ],
)
def test_format_size(size: int | None, expected: str) -> None:
    assert format_size(size) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "-"),
        (0.4, "0:00"),
        (59.6, "1:00"),
        (596.458, "9:56"),
        (3725.0, "1:02:05"),
    ],
)
def test_format_duration(seconds: float | None, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("24/1", "24"),
        ("30000/1001", "29.97"),
        ("24000/1001", "23.976"),
        ("25", "25"),
        ("1/0", "1/0"),
        (None, "-"),
    ],
)
def test_format_frame_rate(rate: str | None, expected: str) -> None:
    assert format_frame_rate(rate) == expected


def test_format_table_aligns_columns() -> None:
    table = format_table(["N", "NAME"], [["1", "a"], ["100", "bbb"]], right_aligned={0})

    assert table.splitlines() == ["  N  NAME", "  1  a", "100  bbb"]


class TestNewCommands:
    def test_stats_table(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "stats")

        assert code == 0
        assert "videos          3" in out
        assert "total duration  33:38" in out
        assert "CONTAINER  VIDEOS\nmatroska        1\nmp4             1" in out
        assert "RESOLUTION  VIDEOS\n1080p            1\n720p             1" in out

    def test_video_detail(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(
            capsys, served, "video", "/srv/media/movies/big-buck-bunny.mp4"
        )

        assert code == 0
        assert "duration    9:56" in out
        assert "resolution  1920x1080" in out
        assert "size        263.3 MiB (276,134,947 bytes)" in out

    def test_video_not_found_exits_1(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, served, "video", "/srv/media/tv/x.mkv")

        assert code == 1
        assert out == ""
        assert err.startswith("reelwatch: no catalog entry for '/srv/media/tv/x.mkv'")
        assert err.endswith("(error -32002)\n")

    def test_cancel_pending(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        run_cli(capsys, served, "scan", "/srv/media/tv")
        code, out, _ = run_cli(capsys, served, "cancel", "3")

        assert code == 0
        assert out == "job 3 cancelled\n"

    def test_rescan_all(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, served, "rescan")

        assert code == 0
        assert out.splitlines() == [
            "queued job 3: scan /srv/media/movies (pending); "
            "follow it with 'reelwatch job 3'",
            "queued job 4: scan /srv/media/tv (pending); "
            "follow it with 'reelwatch job 4'",
        ]

    def test_videos_jsonl(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "videos", "--jsonl")

        lines = [json.loads(line) for line in out.splitlines()]
        assert code == 0
        assert [video["id"] for video in lines] == [1, 3, 2]

    def test_jobs_jsonl(self, served: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, served, "jobs", "--jsonl")

        assert code == 0
        assert [json.loads(line)["id"] for line in out.splitlines()] == [2, 1]

    def test_videos_since(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(
            capsys, served, "videos", "--since", "j1.0123456789abcdef.3"
        )

        assert code == 0
        assert out.startswith("the cursor is from an earlier daemon run")

    def test_metrics_text(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "metrics")

        assert code == 0
        assert "reelwatch_catalog_videos 3\n" in out
        assert out.endswith("\n")

    def test_config_lines(
        self, served: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, served, "config")

        assert code == 0
        assert 'socket.mode = "0600"' in out.splitlines()

    def test_sync_timeout_exits_5(
        self, served: Path, service: FakeService, capsys: pytest.CaptureFixture[str]
    ) -> None:
        service.status_error = SyncTimeoutError("sync timed out after 1 s")

        code, _, err = run_cli(capsys, served, "status", "--sync")

        assert code == 5
        assert err == "reelwatch: sync timed out after 1 s (error -32005)\n"
        assert service.syncs == [None]


@pytest.mark.parametrize(
    ("shell", "file_name"), [("bash", "reelwatch.bash"), ("zsh", "_reelwatch")]
)
def test_completion_matches_shipped_file(
    shell: str, file_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["completion", shell])

    assert code == 0
    assert capsys.readouterr().out == (REPO / "completions" / file_name).read_text()


def test_completion_knows_every_command() -> None:
    parser = build_parser()
    [commands] = [
        action
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    ]

    assert sorted(commands.choices) == sorted(COMMANDS)
    for name, subparser in commands.choices.items():
        options = {
            option
            for action in subparser._actions
            for option in action.option_strings
            if option.startswith("--")
        }
        common = {"--help", "--socket", "--config", "--json", "--jsonl"}
        if name == "serve":
            common = {"--help", "--config"}
            assert options >= common, name
        assert options - common == set(COMMANDS[name]), name


def test_bash_completion_completes_commands() -> None:
    script = REPO / "completions" / "reelwatch.bash"
    done = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{script}"; COMP_WORDS=(reelwatch vid); COMP_CWORD=1; '
            '_reelwatch; echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.split() == ["videos", "video"]
