"""Tests for the JSON and console log output, redaction and truncation."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from reelwatch.errors import ConfigError
from reelwatch.logs import REDACTED, configure_logging, reset_logging

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestJsonOutput:
    def test_json_line_has_stable_keys(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        structlog.get_logger("reelwatch.scan").info(
            "scan_finished", root="/srv/media", files=3
        )
        [record] = json_lines(stream)

        assert list(record)[:4] == ["timestamp", "level", "logger", "event"]
        assert record["event"] == "scan_finished"
        assert record["level"] == "info"
        assert record["logger"] == "reelwatch.scan"
        assert record["root"] == "/srv/media"
        assert record["files"] == 3
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None

    def test_auto_format_on_non_terminal_is_json(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "auto", stream=stream)

        structlog.get_logger("reelwatch").info("daemon_started", pid=1)

        assert json_lines(stream)[0]["event"] == "daemon_started"

    def test_console_format_is_not_json(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "console", stream=stream)

        structlog.get_logger("reelwatch").info("daemon_started", pid=1)
        output = stream.getvalue()

        assert "daemon_started" in output
        assert "pid=1" in output
        assert not output.startswith("{")

    def test_level_filters_lower_events(self) -> None:
        stream = io.StringIO()
        configure_logging("WARNING", "json", stream=stream)
        log = structlog.get_logger("reelwatch")

        log.info("not_logged")
        log.warning("root_missing", root="/srv/gone")

        assert [r["event"] for r in json_lines(stream)] == ["root_missing"]

    def test_stdlib_library_records_included(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        logging.getLogger("aiosqlite").warning("connection %s closed", "db-1")
        [record] = json_lines(stream)

        assert record["logger"] == "aiosqlite"
        assert record["level"] == "warning"
        assert record["event"] == "connection db-1 closed"

    def test_python_warnings_included(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old option", DeprecationWarning, stacklevel=1)
        [record] = json_lines(stream)

        assert record["logger"] == "py.warnings"
        assert "DeprecationWarning: old option" in record["event"]

    def test_exception_traceback_in_json(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        try:
            raise ValueError("bad header")
        except ValueError:
            structlog.get_logger("reelwatch").exception("probe_failed", job_id=7)
        [record] = json_lines(stream)

        assert record["level"] == "error"
        assert record["job_id"] == 7
        assert "ValueError: bad header" in record["exception"]

    def test_reconfigure_replaces_handler(self) -> None:
        first, second = io.StringIO(), io.StringIO()
        configure_logging("info", "json", stream=first)
        log = structlog.get_logger("reelwatch")
        log.info("before_reload")

        configure_logging("info", "json", stream=second)
        log.info("after_reload")

        assert [r["event"] for r in json_lines(first)] == ["before_reload"]
        assert [r["event"] for r in json_lines(second)] == ["after_reload"]


class TestRedaction:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "db_password",
            "api_token",
            "TOKEN",
            "client_secret",
            "api_key",
            "authorization",
            "passwd",
            "session_key",
            "cookie",
        ],
    )
    def test_secret_keys_redacted(self, key: str) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        structlog.get_logger("reelwatch").info("request_received", **{key: "hunter2"})
        [record] = json_lines(stream)

        assert record[key] == REDACTED
        assert "hunter2" not in stream.getvalue()

    def test_nested_secret_redacted(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        structlog.get_logger("reelwatch").info(
            "request_received",
            params={"path": "/srv/a.mkv", "auth": {"token": "hunter2"}},
        )
        [record] = json_lines(stream)

        assert record["params"]["path"] == "/srv/a.mkv"
        assert record["params"]["auth"]["token"] == REDACTED

    def test_ordinary_keys_kept(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        structlog.get_logger("reelwatch").info(
            "video_added", path="/srv/a.mkv", author="someone"
        )
        [record] = json_lines(stream)

        assert record["path"] == "/srv/a.mkv"
        assert record["author"] == "someone"


class TestTruncation:
    def test_long_string_truncated(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        content = "a" * 100_000

        structlog.get_logger("reelwatch").info("file_read", content=content)
        [record] = json_lines(stream)

        assert record["content"].startswith("a" * 1000 + "...")
        assert record["content"].endswith("[truncated, 100000 chars]")
        assert len(stream.getvalue()) < 2000

    def test_non_utf8_path_logged_escaped(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        path = os.fsdecode(b"/media/caf\xe9.mkv")

        structlog.get_logger("reelwatch").info("probe_failed", path=path)
        [record] = json_lines(stream)

        assert record["path"] == "/media/caf\\xe9.mkv"

    def test_bytes_logged_as_length(self, tmp_path: Path) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        media = tmp_path / "clip.mp4"
        media.write_bytes(os.urandom(4096))

        structlog.get_logger("reelwatch").info("header_read", data=media.read_bytes())
        [record] = json_lines(stream)

        assert record["data"] == "<4096 bytes>"

    def test_long_list_truncated(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        structlog.get_logger("reelwatch").info(
            "scan_errors", paths=[f"/srv/{i}.mkv" for i in range(500)]
        )
        [record] = json_lines(stream)

        assert len(record["paths"]) == 51
        assert record["paths"][0] == "/srv/0.mkv"
        assert record["paths"][-1] == "...[450 more items]"

    def test_long_stdlib_message_truncated(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)

        logging.getLogger("somelib").warning("payload: %s", "b" * 50_000)
        [record] = json_lines(stream)

        assert record["event"].endswith("[truncated, 50009 chars]")


class TestJournald:
    def test_journal_stream_gets_priority_prefix(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stream that $JOURNAL_STREAM names gets "<N>" syslog prefixes."""
        path = tmp_path / "journal.log"
        with path.open("w") as stream:
            info = os.fstat(stream.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
            configure_logging("info", "json", stream=stream)
            log = structlog.get_logger("reelwatch")

            log.info("daemon_ready")
            log.error("reload_failed", error="bad key")
        lines = path.read_text().splitlines()

        assert lines[0].startswith('<6>{"timestamp"')
        assert lines[1].startswith("<3>{")
        assert json.loads(lines[1][3:])["event"] == "reload_failed"

    def test_other_stream_has_no_prefix(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("JOURNAL_STREAM", "1:1")
        path = tmp_path / "plain.log"
        with path.open("w") as stream:
            configure_logging("info", "json", stream=stream)
            structlog.get_logger("reelwatch").info("daemon_ready")

        assert path.read_text().startswith('{"timestamp"')


class TestInvalidSettings:
    def test_invalid_level_rejected(self) -> None:
        with pytest.raises(ConfigError, match=r"log_level 'verbose' is invalid"):
            configure_logging("verbose", "json")

    def test_invalid_format_rejected(self) -> None:
        with pytest.raises(ConfigError, match=r"log_format 'xml' is invalid"):
            configure_logging("info", "xml")
