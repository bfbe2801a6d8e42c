"""Conformance tests for the control server, speaking raw JSON-RPC on a socket."""

from __future__ import annotations

import base64
import grp
import io
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from reelwatch.errors import ConfigError, ControlSocketError
from reelwatch.events import SyncTimeoutError
from reelwatch.logs import configure_logging, reset_logging
from reelwatch.models import Video
from reelwatch.server import (
    AccessPolicy,
    ControlServer,
    PeerCredentials,
    SocketOptions,
)
from rpc_doubles import (
    FakeService,
    RawConnection,
    running_server,
    short_socket_dir,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_socket_dir() as directory:
        yield directory


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "rw.sock"


def rpc(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


# ---------------------------------------------------------------------------
# Methods


async def test_ping_returns_pong(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("ping", id=7))

        assert answer == {"jsonrpc": "2.0", "id": 7, "result": "pong"}


async def test_status_reports_roots_jobs_videos(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        result = (await conn.request(rpc("status")))["result"]

        assert result["version"] == "0.1.0"
        assert result["idle"] is True
        assert result["roots"][0] == {
            "path": "/srv/media/movies",
            "state": "watching",
            "error": None,
        }
        assert result["jobs"]["complete"] == 1
        assert result["jobs"]["failed"] == 1
        assert result["videos"] == 3


async def test_scan_queues_job(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(
            rpc("scan", {"path": "/srv/media/tv/show", "recursive": False}, id="a")
        )

        assert answer["id"] == "a"
        assert answer["result"] == {
            "job_id": 3,
            "status": "pending",
            "path": "/srv/media/tv/show",
        }
        assert service.jobs[3].params == {"recursive": False}


async def test_scan_outside_roots_is_32001(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        error = (await conn.request(rpc("scan", {"path": "/etc"})))["error"]

        assert error["code"] == -32001
        assert "'/etc'" in error["message"]
        assert error["data"]["reason"] == "path_not_allowed"


async def test_job_get_returns_job_fields(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        job = (await conn.request(rpc("job.get", {"job_id": 1})))["result"]

        assert job["id"] == 1
        assert job["kind"] == "scan"
        assert job["path"] == "/srv/media/movies"
        assert job["status"] == "complete"
        assert job["created_at"] == 1714561200.0
        assert job["started_at"] == 1714561200.5
        assert job["finished_at"] == 1714561202.0
        assert job["result"]["new"] == 1
        assert job["error"] is None


async def test_job_get_unknown_is_32002(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("job.get", {"job_id": 999}, id=5))

        assert answer["id"] == 5
        assert answer["error"]["code"] == -32002
        assert answer["error"]["message"].startswith("job 999 not found;")
        assert answer["error"]["data"] == {"reason": "not_found"}


async def test_jobs_list_filters_by_status(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        everything = (await conn.request(rpc("jobs.list")))["result"]["jobs"]
        failed = (await conn.request(rpc("jobs.list", {"status": "failed"})))["result"][
            "jobs"
        ]
        one = (await conn.request(rpc("jobs.list", {"limit": 1})))["result"]["jobs"]

        assert [job["id"] for job in everything] == [2, 1]
        assert [job["id"] for job in failed] == [2]
        assert [job["id"] for job in one] == [2]


async def test_videos_list_pages_with_cursor(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        first = (await conn.request(rpc("videos.list", {"limit": 2})))["result"]
        second = (
            await conn.request(
                rpc("videos.list", {"limit": 2, "cursor": first["next_cursor"]})
            )
        )["result"]

        assert [v["id"] for v in first["videos"]] == [1, 3]
        assert first["next_cursor"] == "2"
        assert [v["id"] for v in second["videos"]] == [2]
        assert second["next_cursor"] is None
        video = first["videos"][0]
        assert video["path"] == "/srv/media/movies/big-buck-bunny.mp4"
        assert video["duration_s"] == 596.458
        assert video["frame_rate"] == "24/1"
        assert video["video_codec"] == "h264"
        assert first["videos"][1]["error"] == "unsupported container: avi"


async def test_videos_list_under_filters(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        page = (await conn.request(rpc("videos.list", {"under": "/srv/media/tv"})))[
            "result"
        ]

        assert [v["id"] for v in page["videos"]] == [3, 2]


async def test_positional_params_follow_field_order(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        job = (await conn.request(rpc("job.get", [2])))["result"]
        too_many = (await conn.request(rpc("job.get", [2, 3])))["error"]

        assert job["id"] == 2
        assert too_many["code"] == -32602
        assert "at most 1" in too_many["message"]


# ---------------------------------------------------------------------------
# Error codes, and the connection staying usable after each


async def test_malformed_json_then_valid_request(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(b'{"jsonrpc": "2.0", "method": "ping", "id": 1\n')
        error = await conn.receive_json()
        after = await conn.request(rpc("ping", id=2))

        assert error["id"] is None
        assert error["error"]["code"] == -32700
        assert error["error"]["data"]["reason"] == "parse_error"
        assert after == {"jsonrpc": "2.0", "id": 2, "result": "pong"}


async def test_invalid_utf8_is_parse_error(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}\n')
        error = await conn.receive_json()
        after = await conn.request(rpc("ping", id=2))

        assert error["error"]["code"] == -32700
        assert error["error"]["data"]["reason"] == "invalid_utf8"
        assert after["result"] == "pong"


@pytest.mark.parametrize(
    ("method", "param"),
    [("video.get", "path"), ("videos.list", "under"), ("scan", "path")],
)
async def test_invalid_utf8_in_params_is_parse_error(
    sock_path: Path, method: str, param: str
) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(
            f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":'.encode()
            + f'{{"{param}":"'.encode()
            + b'\xed\xa0\x80"}}\n'
        )
        error = await conn.receive_json()
        after = await conn.request(rpc("ping", id=2))

        assert error["id"] == 1
        assert error["error"]["code"] == -32700
        assert error["error"]["data"]["reason"] == "invalid_utf8"
        assert after["result"] == "pong"


@pytest.mark.parametrize("method", ["job.get", "job.cancel"])
@pytest.mark.parametrize("params", [{"job_id": 2**63}, [2**63], {"job_id": 10**30}])
async def test_job_id_beyond_int64_is_32602(
    sock_path: Path, method: str, params: Any
) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc(method, params, id=4))

        assert answer["id"] == 4
        assert answer["error"]["code"] == -32602
        assert "<= 9223372036854775807" in answer["error"]["message"]
        assert "`params.job_id`" in answer["error"]["message"]
        assert answer["error"]["data"]["reason"] == "invalid_params"


async def test_deep_nesting_is_parse_error(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        params = b"[" * 100_000 + b"]" * 100_000
        await conn.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + params)
        await conn.send(b"}\n")
        error = await conn.receive_json()
        batch_error = await conn.request_raw_line(b"[" * 50_000 + b"]" * 50_000)
        after = await conn.request(rpc("ping", id=2))

        assert error["error"]["code"] == -32700
        assert error["error"]["data"]["reason"] == "nesting_too_deep"
        assert batch_error["error"]["data"]["reason"] == "nesting_too_deep"
        assert after["result"] == "pong"


@pytest.mark.parametrize(
    ("message", "expected_in_message"),
    [
        ({"jsonrpc": "2.0", "id": 4, "method": 12}, "`request.method`"),
        ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, "`request.jsonrpc`"),
        ({"id": 4, "method": "ping"}, "`jsonrpc`"),
        ({"jsonrpc": "2.0", "id": 4, "method": "ping", "params": 3}, "params"),
        (17, "Expected `object`"),
    ],
)
async def test_invalid_request_is_32600(
    sock_path: Path, message: Any, expected_in_message: str
) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(message)
        after = await conn.request(rpc("ping", id=2))

        assert answer["error"]["code"] == -32600
        assert expected_in_message in answer["error"]["message"]
        assert answer["id"] == (4 if isinstance(message, dict) else None)
        assert after["result"] == "pong"


async def test_fractional_id_is_invalid_request(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("ping", id=1.5))

        assert answer["id"] is None
        assert answer["error"]["code"] == -32600
        assert "`request.id`" in answer["error"]["message"]


async def test_unknown_method_is_32601(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("videos.delete", id=3))

        assert answer["id"] == 3
        assert answer["error"]["code"] == -32601
        assert "'videos.delete'" in answer["error"]["message"]
        assert answer["error"]["data"]["reason"] == "method_not_found"


@pytest.mark.parametrize(
    ("method", "params", "expected_in_message"),
    [
        ("job.get", {"job_id": "7"}, "Expected `int`, got `str` - at `params.job_id`"),
        ("job.get", {}, "missing required field `job_id`"),
        ("job.get", {"job_id": 0}, "Expected `int` >= 1 - at `params.job_id`"),
        ("scan", {"path": "/srv/media/tv", "recursve": False}, "unknown field"),
        ("jobs.list", {"status": "done"}, "Invalid enum value 'done'"),
        ("jobs.list", {"limit": 5000}, "<= 1000 - at `params.limit`"),
        ("videos.list", {"cursor": "x"}, "invalid cursor 'x'"),
        ("status", {"verbose": True}, "unknown field `verbose`"),
    ],
)
async def test_bad_params_are_32602(
    sock_path: Path, method: str, params: Any, expected_in_message: str
) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc(method, params, id=9))
        after = await conn.request(rpc("ping", id=2))

        assert answer["id"] == 9
        assert answer["error"]["code"] == -32602
        assert expected_in_message in answer["error"]["message"]
        assert answer["error"]["data"]["reason"] == "invalid_params"
        assert after["result"] == "pong"


async def test_service_crash_is_32603(sock_path: Path) -> None:
    service = FakeService()
    service.status_error = RuntimeError("database vanished")
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("status", id=1))
        after = await conn.request(rpc("ping", id=2))

        assert answer["error"]["code"] == -32603
        assert "RuntimeError" in answer["error"]["message"]
        assert "database vanished" not in answer["error"]["message"]
        assert answer["error"]["data"]["reason"] == "internal_error"
        assert after["result"] == "pong"


async def test_blank_lines_are_ignored(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(b"\n  \r\n")
        answer = await conn.request(rpc("ping", id=1))

        assert answer["id"] == 1


# ---------------------------------------------------------------------------
# Notifications and batches


async def test_notification_gets_no_reply(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()

        await conn.send_json({"jsonrpc": "2.0", "method": "status"})
        await conn.send_json({"jsonrpc": "2.0", "method": "no.such.method"})
        answer = await conn.request(rpc("ping", id=8))

        assert answer == {"jsonrpc": "2.0", "id": 8, "result": "pong"}
        assert "status" in service.calls


async def test_null_id_is_a_request_not_a_notification(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request(rpc("ping", id=None))

        assert answer == {"jsonrpc": "2.0", "id": None, "result": "pong"}


async def test_batch_answers_in_one_array(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answers = await conn.request(
            [
                rpc("ping", id=1),
                {"jsonrpc": "2.0", "method": "ping"},
                rpc("job.get", {"job_id": 999}, id=2),
                {"foo": "bar"},
                rpc("nope", id=3),
            ]
        )

        by_id = {a["id"]: a for a in answers if a["id"] is not None}
        assert len(answers) == 4
        assert by_id[1]["result"] == "pong"
        assert by_id[2]["error"]["code"] == -32002
        assert by_id[3]["error"]["code"] == -32601
        invalid = [a for a in answers if a["id"] is None]
        assert invalid[0]["error"]["code"] == -32600


async def test_empty_batch_is_one_error(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        answer = await conn.request([])

        assert isinstance(answer, dict)
        assert answer["error"]["code"] == -32600
        assert answer["error"]["data"]["reason"] == "empty_batch"


async def test_batch_of_notifications_gets_no_reply(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send_json([{"jsonrpc": "2.0", "method": "ping"}] * 3)
        answer = await conn.request(rpc("ping", id=4))

        assert answer["id"] == 4


async def test_batch_too_large_is_32004(sock_path: Path) -> None:
    async with running_server(
        FakeService(), sock_path, max_batch_requests=3
    ) as harness:
        conn = await harness.connect()

        answer = await conn.request([rpc("ping", id=i) for i in range(4)])

        assert answer["error"]["code"] == -32004
        assert answer["error"]["data"] == {"reason": "batch_too_large", "limit": 3}


# ---------------------------------------------------------------------------
# Limits and hostile clients


async def test_oversized_line_is_rejected_and_closed(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        async def send_ten_mib() -> None:
            # The server stops reading after 1 MiB and closes, so this send
            # ends with an error once the socket buffers are full.
            try:
                await conn.send(b"x" * (10 * 1024 * 1024) + b"\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

        # The sender ends by itself once the server closes; cancelling it
        # instead can race with the socket turning writable (an asyncio
        # InvalidStateError in anyio's Unix socket stream).
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(send_ten_mib)
            error = await conn.receive_json()
            closed = await conn.is_closed_by_server()
        other = await harness.connect()
        after = await other.request(rpc("ping", id=2))

        assert error["error"]["code"] == -32004
        assert error["error"]["data"] == {"reason": "line_too_long", "limit": 1048576}
        assert closed
        assert after["result"] == "pong"


PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


@pytest.mark.parametrize("size", [1001, 2000, 60_000, 70_000])
async def test_line_limit_is_exact_in_one_read(sock_path: Path, size: int) -> None:
    async with running_server(FakeService(), sock_path, max_line_bytes=1000) as harness:
        conn = await harness.connect()

        await conn.send(PING.ljust(size) + b"\n")
        error = await conn.receive_json()
        closed = await conn.is_closed_by_server()

        assert error["error"]["data"] == {"reason": "line_too_long", "limit": 1000}
        assert closed


@pytest.mark.parametrize("pieces", [1, 10])
async def test_line_of_exactly_the_limit_is_answered(
    sock_path: Path, pieces: int
) -> None:
    async with running_server(FakeService(), sock_path, max_line_bytes=1000) as harness:
        conn = await harness.connect()
        line = PING.ljust(1000) + b"\n"

        for start in range(0, len(line), len(line) // pieces + 1):
            await conn.send(line[start : start + len(line) // pieces + 1])
            await anyio.sleep(0.01)
        answer = await conn.receive_json()

        assert answer["result"] == "pong"


async def test_truncated_input_gets_parse_error(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(b'{"jsonrpc":"2.0","id":1,"method":"pi')
        await conn.stream.send_eof()
        error = await conn.receive_json()

        assert error["error"]["code"] == -32700
        assert await conn.is_closed_by_server()


async def test_last_line_without_newline_is_answered(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        await conn.send(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
        await conn.stream.send_eof()
        answer = await conn.receive_json()

        assert answer["result"] == "pong"
        assert await conn.is_closed_by_server()


async def test_excess_connections_are_refused(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path, max_connections=2) as harness:
        first = await harness.connect()
        second = await harness.connect()
        await first.request(rpc("ping"))
        await second.request(rpc("ping"))

        third = await harness.connect()
        refusal = await third.receive_json()
        third_closed = await third.is_closed_by_server()
        await first.aclose()
        await wait_until(lambda: harness.server.active_connections == 1)
        fourth = await harness.connect()
        after = await fourth.request(rpc("ping", id=6))

        assert refusal["error"]["code"] == -32004
        assert refusal["error"]["data"]["reason"] == "too_many_connections"
        assert third_closed
        assert after["result"] == "pong"


async def test_closed_connection_frees_slot_at_once(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    async with running_server(service, sock_path, max_connections=2) as harness:
        for _ in range(2):
            gone = await harness.connect()
            await gone.send_json(rpc("status", id=1))
            await gone.aclose()
        with anyio.fail_after(10):
            await service.status_entered.wait()

        # The status requests of the closed connections are still blocked.
        fresh = await harness.connect()
        answer = await fresh.request(rpc("ping", id=2))

        assert answer == {"jsonrpc": "2.0", "id": 2, "result": "pong"}
        assert harness.server.rejected_connections == 0
        assert harness.server.active_connections == 1


async def test_half_closed_connection_keeps_slot(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    async with running_server(service, sock_path, max_connections=1) as harness:
        waiting = await harness.connect()
        await waiting.send_json(rpc("status", id=1))
        await waiting.stream.send_eof()
        with anyio.fail_after(10):
            await service.status_entered.wait()

        refused = await (await harness.connect()).receive_json()
        service.gate.set()
        answer = await waiting.receive_json()

        assert refused["error"]["data"]["reason"] == "too_many_connections"
        assert answer["result"]["videos"] == 3


async def test_many_idle_connections_leave_server_usable(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path, max_connections=128) as harness:
        idle = [await harness.connect() for _ in range(300)]
        await idle[0].request(rpc("ping"))

        refused = await idle[-1].receive_json()
        for conn in idle:
            await conn.aclose()
        fresh = await harness.connect()
        answer = await fresh.request(rpc("status", id=1))

        assert refused["error"]["data"]["reason"] == "too_many_connections"
        assert answer["result"]["videos"] == 3


async def test_requests_in_flight_limit(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    async with running_server(service, sock_path, max_requests_in_flight=1) as harness:
        conn = await harness.connect()

        await conn.send_json(rpc("status", id=1))
        with anyio.fail_after(10):
            await service.status_entered.wait()
        busy = await conn.request(rpc("ping", id=2))
        service.gate.set()
        status = await conn.receive_json()
        after = await conn.request(rpc("ping", id=3))

        assert busy["id"] == 2
        assert busy["error"]["code"] == -32004
        assert busy["error"]["data"]["reason"] == "too_many_requests"
        assert status["id"] == 1
        assert status["result"]["videos"] == 3
        assert after["result"] == "pong"


async def test_busy_rejections_are_logged_once(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    log_stream = io.StringIO()
    configure_logging("warning", "json", stream=log_stream)
    try:
        async with running_server(
            service, sock_path, max_requests_in_flight=1
        ) as harness:
            conn = await harness.connect()
            await conn.send_json(rpc("status", id=1))
            with anyio.fail_after(10):
                await service.status_entered.wait()
            for request_id in range(2, 12):
                await conn.request(rpc("ping", id=request_id))
            service.gate.set()
            await conn.receive_json()
            await conn.aclose()
            await wait_until(lambda: harness.server.active_connections == 0)
    finally:
        reset_logging()
    events = [json.loads(line) for line in log_stream.getvalue().splitlines()]

    rejected = [e for e in events if e["event"] == "request_rejected"]
    summaries = [e for e in events if e["event"] == "requests_rejected"]
    assert len(rejected) == 1
    assert len(summaries) == 1
    assert summaries[0]["count"] == 10
    assert summaries[0]["reason"] == "too_many_requests"


async def test_video_get_sync_missing_names_no_sync(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        path = "/srv/media/tv/missing.mkv"

        answer = await conn.request(rpc("video.get", {"path": path, "sync": True}))

        assert answer["error"]["code"] == -32002
        assert "after a sync scan" in answer["error"]["message"]
        assert "retry with sync" not in answer["error"]["message"]
        assert path in answer["error"]["message"]


async def test_pipelined_requests_all_answered(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()

        lines = b"".join(
            (b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i) for i in range(10)
        )
        await conn.send(lines)
        answers = [await conn.receive_json() for _ in range(10)]

        assert sorted(a["id"] for a in answers) == list(range(10))


async def test_idle_connection_is_closed(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path, idle_timeout_s=0.2) as harness:
        conn = await harness.connect()
        await conn.request(rpc("ping"))

        assert await conn.is_closed_by_server()


async def test_idle_timeout_waits_for_running_request(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    async with running_server(service, sock_path, idle_timeout_s=0.1) as harness:
        conn = await harness.connect()

        await conn.send_json(rpc("status", id=1))
        await anyio.sleep(0.5)
        service.gate.set()
        answer = await conn.receive_json()

        assert answer["result"]["idle"] is True


async def test_client_gone_mid_request(sock_path: Path) -> None:
    service = FakeService()
    service.gate = anyio.Event()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        await conn.send_json(rpc("status", id=1))
        with anyio.fail_after(10):
            await service.status_entered.wait()

        await conn.aclose()
        service.gate.set()
        await wait_until(lambda: harness.server.active_connections == 0)
        other = await harness.connect()
        answer = await other.request(rpc("ping", id=2))

        assert answer["result"] == "pong"


async def test_client_that_never_reads_is_dropped(sock_path: Path) -> None:
    async with running_server(
        FakeService(), sock_path, send_timeout_s=0.2, max_requests_in_flight=64
    ) as harness:
        conn = await harness.connect()
        request = msgspec_line(rpc("videos.list", {"limit": 1000}))

        async def flood() -> None:
            try:
                for _ in range(20_000):
                    await conn.send(request)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

        with anyio.fail_after(20):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(flood)
                await wait_until(lambda: harness.server.active_connections == 0)
                task_group.cancel_scope.cancel()
        other = await harness.connect()
        answer = await other.request(rpc("ping", id=2))

        assert answer["result"] == "pong"


def msgspec_line(message: Any) -> bytes:
    return msgspec.json.encode(message) + b"\n"


# ---------------------------------------------------------------------------
# The socket file


async def test_socket_created_0600_and_removed(sock_dir: Path) -> None:
    path = sock_dir / "run" / "reelwatch" / "rw.sock"

    async with running_server(FakeService(), path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        exists_while_serving = path.is_socket()

    assert exists_while_serving
    assert mode == 0o600
    assert not path.exists()


async def test_socket_mode_and_group_from_config(sock_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    section = _SocketSection(mode="0660", group=group)
    server = ControlServer(FakeService(), section, sock_path)

    async with anyio.create_task_group() as task_group:
        await task_group.start(server.serve)
        info = os.stat(sock_path)
        task_group.cancel_scope.cancel()

    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == os.getgid()


async def test_stale_socket_file_is_replaced(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()

    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("ping"))

    assert answer["result"] == "pong"


async def test_live_socket_is_not_taken_over(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        second = ControlServer(FakeService(), None, sock_path)
        with pytest.raises(ControlSocketError, match="another process is listening"):
            await second.serve()
        conn = await harness.connect()
        answer = await conn.request(rpc("ping"))

    assert answer["result"] == "pong"


async def test_regular_file_at_socket_path_is_kept(sock_path: Path) -> None:
    await anyio.Path(sock_path).write_text("not a socket")
    server = ControlServer(FakeService(), None, sock_path)

    with pytest.raises(ControlSocketError, match="is not a socket"):
        await server.serve()

    assert await anyio.Path(sock_path).read_text() == "not a socket"


async def test_too_long_socket_path_is_clear_error(sock_dir: Path) -> None:
    path = sock_dir / ("x" * 120) / "rw.sock"
    server = ControlServer(FakeService(), None, path)

    with pytest.raises(ControlSocketError, match="shorter than 108 bytes"):
        await server.serve()


async def test_adopted_socket_is_served_and_kept(sock_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(sock_path))
    listening.listen()
    server = ControlServer(FakeService(), None, sock_path, listen_socket=listening)

    async with anyio.create_task_group() as task_group:
        await task_group.start(server.serve)
        conn = await RawConnection.open(sock_path)
        answer = await conn.request(rpc("ping"))
        await conn.aclose()
        await wait_until(lambda: server.active_connections == 0)
        task_group.cancel_scope.cancel()

    assert answer["result"] == "pong"
    assert await anyio.Path(sock_path).is_socket()


# ---------------------------------------------------------------------------
# Options and access control


class _SocketSection:
    """Stands in for the configuration's ``socket`` section."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def test_options_read_config_section() -> None:
    section = _SocketSection(
        mode="0660", max_line_bytes=4096, idle_timeout_s=5.0, group=None
    )

    options = SocketOptions.from_config(section)

    assert options.mode == 0o660
    assert options.max_line_bytes == 4096
    assert options.idle_timeout_s == 5.0
    assert options.max_connections == 128


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"mode": "rw-"}, "socket.mode 'rw-' is not an octal file mode"),
        ({"max_connections": 0}, "Expected `int` >= 1 - at `socket.max_connections`"),
    ],
)
def test_options_reject_bad_values(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        SocketOptions.from_config(_SocketSection(**values))


def test_unknown_group_is_config_error(sock_path: Path) -> None:
    options = SocketOptions(control_group="no-such-group-here")

    with pytest.raises(ConfigError, match="socket.control_group 'no-such-group-here'"):
        ControlServer(FakeService(), options, sock_path)


def test_policy_allows_root_daemon_user_and_group() -> None:
    policy = AccessPolicy(control_group="nogroup", daemon_uid=1500)

    assert policy.is_allowed(PeerCredentials(pid=1, uid=0, gid=0))
    assert policy.is_allowed(PeerCredentials(pid=1, uid=1500, gid=1500))
    assert policy.is_allowed(PeerCredentials(pid=1, uid=4242, gid=65534))
    assert not policy.is_allowed(PeerCredentials(pid=1, uid=4242, gid=4242))
    assert not policy.is_allowed(None)


def test_policy_without_group_allows_only_owners() -> None:
    policy = AccessPolicy(control_group=None, daemon_uid=1500)

    assert not policy.is_allowed(PeerCredentials(pid=1, uid=65534, gid=65534))
    assert "uid 1500" in policy.describe_rule()


async def test_peer_credentials_are_read(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(sock_path))
        try:
            # The server runs in this process, so the client's end reports
            # this process's own pid and uid.
            peer = PeerCredentials.from_socket(raw)
        finally:
            raw.close()

    assert peer.pid == os.getpid()
    assert peer.uid == os.geteuid()


@pytest.fixture
def shared_sock_dir() -> Iterator[Path]:
    """A socket directory that another user can enter."""
    with short_socket_dir() as directory:
        os.chmod(directory, 0o755)
        yield directory


def _socat_as(uid: int, gid: int, path: Path, line: bytes) -> Any:
    done = subprocess.run(
        ["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"],
        input=line,
        capture_output=True,
        user=uid,
        group=gid,
        extra_groups=[],
        check=True,
        timeout=20,
    )
    return msgspec.json.decode(done.stdout)


needs_root_and_socat = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("socat") is None,
    reason="running a client as another user needs root and socat",
)


@needs_root_and_socat
async def test_other_user_may_read_not_scan(shared_sock_dir: Path) -> None:
    path = shared_sock_dir / "rw.sock"
    async with running_server(FakeService(), path, mode=0o666):
        status = await anyio.to_thread.run_sync(
            _socat_as, 65534, 65534, path, msgspec_line(rpc("status", id=1))
        )
        scan = await anyio.to_thread.run_sync(
            _socat_as,
            65534,
            65534,
            path,
            msgspec_line(rpc("scan", {"path": "/srv/media/tv"}, id=2)),
        )

    assert status["result"]["videos"] == 3
    assert scan["error"]["code"] == -32003
    assert "method 'scan'" in scan["error"]["message"]
    assert "root or the daemon's user" in scan["error"]["message"]
    assert "uid 65534" in scan["error"]["message"]
    assert scan["error"]["data"]["reason"] == "permission_denied"


@needs_root_and_socat
async def test_control_group_member_may_scan(shared_sock_dir: Path) -> None:
    path = shared_sock_dir / "rw.sock"
    async with running_server(FakeService(), path, mode=0o666, control_group="nogroup"):
        scan = await anyio.to_thread.run_sync(
            _socat_as,
            4242,
            65534,
            path,
            msgspec_line(rpc("scan", {"path": "/srv/media/tv"}, id=2)),
        )

    assert scan["result"]["status"] == "pending"


@needs_root_and_socat
async def test_socket_mode_keeps_other_users_out(shared_sock_dir: Path) -> None:
    path = shared_sock_dir / "rw.sock"
    async with running_server(FakeService(), path):
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["socat", "-", f"UNIX-CONNECT:{path}"],
                input=msgspec_line(rpc("ping")),
                capture_output=True,
                user=65534,
                group=65534,
                extra_groups=[],
                timeout=20,
            )
        )

    assert done.returncode != 0
    assert b"Permission denied" in done.stderr


@needs_root_and_socat
@pytest.mark.parametrize(
    ("method", "params"),
    [("rescan", {}), ("job.cancel", {"job_id": 1}), ("scan", {"path": "/srv"})],
)
async def test_other_user_may_not_control(
    shared_sock_dir: Path, method: str, params: dict[str, Any]
) -> None:
    path = shared_sock_dir / "rw.sock"
    service = FakeService()
    async with running_server(service, path, mode=0o666):
        answer = await anyio.to_thread.run_sync(
            _socat_as, 65534, 65534, path, msgspec_line(rpc(method, params, id=7))
        )

    assert answer["error"]["code"] == -32003
    assert f"method '{method}'" in answer["error"]["message"]
    assert method not in service.calls


@needs_root_and_socat
async def test_other_user_may_subscribe_and_read(shared_sock_dir: Path) -> None:
    path = shared_sock_dir / "rw.sock"
    async with running_server(FakeService(), path, mode=0o666):
        answer = await anyio.to_thread.run_sync(
            _socat_as,
            65534,
            65534,
            path,
            msgspec_line(rpc("subscribe", {"topics": ["video.added"]}, id=1)),
        )

    assert answer["result"]["topics"] == ["video.added"]


# ---------------------------------------------------------------------------
# Methods added for scripting and monitoring


async def test_rescan_one_root(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("rescan", {"root": "/srv/media/tv"}))

    assert answer["result"] == {
        "jobs": [{"job_id": 3, "status": "pending", "path": "/srv/media/tv"}]
    }


async def test_rescan_all_roots(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("rescan"))

    assert [job["path"] for job in answer["result"]["jobs"]] == list(
        ("/srv/media/movies", "/srv/media/tv")
    )


async def test_rescan_outside_roots_is_32001(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("rescan", {"root": "/etc"}))

    assert answer["error"]["code"] == -32001


async def test_job_cancel_pending_job(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        queued = await conn.request(rpc("scan", {"path": "/srv/media/tv"}, id=1))
        job_id = queued["result"]["job_id"]
        answer = await conn.request(rpc("job.cancel", {"job_id": job_id}, id=2))

    assert answer["result"]["status"] == "cancelled"
    assert answer["result"]["error"] == "cancelled on request before it started"


async def test_job_cancel_unknown_is_32002(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("job.cancel", {"job_id": 404}))

    assert answer["error"]["code"] == -32002


async def test_video_get_returns_record(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(
            rpc("video.get", {"path": "/srv/media/tv/show/s01e01.mkv"})
        )

    video = answer["result"]
    assert video["id"] == 2
    assert video["video_codec"] == "hevc"
    assert video["duration_s"] == 1421.5


@pytest.mark.parametrize(
    ("path", "code"),
    [("/srv/media/tv/none.mkv", -32002), ("/etc/passwd", -32001)],
)
async def test_video_get_errors(sock_path: Path, path: str, code: int) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("video.get", {"path": path}))

    assert answer["error"]["code"] == code


async def test_video_get_needs_a_path(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("video.get", {}))

    assert answer["error"]["code"] == -32602
    assert "`params.path` is missing" in answer["error"]["message"]


async def test_video_get_path_bytes_b64(sock_path: Path) -> None:
    path = b"/srv/media/tv/show/s01e01.mkv"
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(
            rpc("video.get", {"path_bytes_b64": base64.b64encode(path).decode()})
        )

    assert answer["result"]["id"] == 2


async def test_sync_flag_reaches_service(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        await conn.request(rpc("status", {"sync": True}, id=1))
        await conn.request(
            rpc("videos.list", {"sync": True, "under": "/srv/media/tv"}, id=2)
        )

    assert service.syncs == [None, "/srv/media/tv"]


async def test_sync_timeout_is_32005(sock_path: Path) -> None:
    service = FakeService()
    service.status_error = SyncTimeoutError("sync timed out after 1 s")
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("status", {"sync": True}))

    assert answer["error"]["code"] == -32005
    assert answer["error"]["data"] == {"reason": "sync_timeout"}


async def test_stats_totals(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("stats"))

    stats = answer["result"]
    assert stats["videos"] == 3
    assert stats["errors"] == 1
    assert stats["total_size"] == 276134947 + 1048576 + 734003200
    assert stats["total_duration_s"] == pytest.approx(596.458 + 1421.5)
    assert stats["by_container"] == {"matroska": 1, "mp4": 1}
    assert stats["by_video_codec"] == {"h264": 1, "hevc": 1}
    assert stats["by_audio_codec"] == {"aac": 1, "opus": 1}
    assert stats["by_resolution"] == {"1080p": 1, "720p": 1}


async def test_config_get_shows_effective_socket(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("config.get"))

    config = answer["result"]
    assert config["allowed_scan_roots"] == ["/srv/media/movies", "/srv/media/tv"]
    assert config["socket"]["mode"] == "0600"
    assert config["socket"]["max_batch_requests"] == 100
    assert config["database_path"] == "/var/lib/reelwatch/reelwatch.db"


async def test_metrics_is_prometheus_text(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("metrics"))

    text = answer["result"]
    lines = text.splitlines()
    assert text.endswith("\n")
    assert 'reelwatch_jobs{state="failed"} 1' in lines
    assert "reelwatch_catalog_videos 3" in lines
    assert "# TYPE reelwatch_probe_batch_seconds histogram" in lines
    assert 'reelwatch_event_to_catalog_seconds_bucket{le="+Inf"} 0' in lines
    samples = [line for line in lines if not line.startswith("#")]
    assert all(len(line.rsplit(" ", 1)) == 2 for line in samples)


# ---------------------------------------------------------------------------
# Subscriptions and notifications


async def subscribe(conn: RawConnection, *topics: str) -> Any:
    return await conn.request(rpc("subscribe", {"topics": list(topics)}, id="sub"))


async def test_subscribe_returns_topics(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        first = await subscribe(conn, "video.added")
        second = await subscribe(conn, "root.state")

    assert first["result"] == {"topics": ["video.added"], "max_backlog": 1000}
    assert second["result"]["topics"] == ["root.state", "video.added"]


async def test_subscribe_unknown_topic_is_32602(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await subscribe(conn, "video.exploded")

    assert answer["error"]["code"] == -32602
    assert "params.topics[0]" in answer["error"]["message"]


async def test_job_updated_notification(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        await subscribe(conn, "job.updated")
        response = await conn.request(rpc("scan", {"path": "/srv/media/tv"}, id=2))
        notification = await conn.receive_json()

    assert response["result"]["job_id"] == 3
    assert notification["method"] == "job.updated"
    assert "id" not in notification
    assert notification["params"]["id"] == 3
    assert notification["params"]["status"] == "pending"


@pytest.mark.parametrize(
    ("topic", "params"),
    [
        ("video.added", {"id": 9, "path": "/srv/media/tv/new.mp4"}),
        ("video.updated", {"id": 2, "path": "/srv/media/tv/show/s01e01.mkv"}),
        ("video.removed", {"id": 3, "path": "/srv/media/tv/show/notes.avi"}),
        ("root.state", {"path": "/srv/media/tv", "state": "missing"}),
    ],
)
async def test_published_topic_is_pushed(
    sock_path: Path, topic: str, params: dict[str, Any]
) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        await subscribe(conn, topic)
        # Another topic first: it must not reach this subscriber.
        service.events.publish("job.updated", {"id": 1})
        service.events.publish(topic, params)
        notification = await conn.receive_json()

    assert notification == {"jsonrpc": "2.0", "method": topic, "params": params}


async def test_unsubscribe_stops_topic(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        await subscribe(conn, "video.added", "video.removed")
        answer = await conn.request(rpc("unsubscribe", {"topics": ["video.added"]}))
        service.events.publish("video.added", {"path": "/a"})
        service.events.publish("video.removed", {"path": "/b"})
        notification = await conn.receive_json()

    assert answer["result"]["topics"] == ["video.removed"]
    assert notification["method"] == "video.removed"


async def test_unsubscribe_all_closes_subscription(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        await subscribe(conn, "video.added")
        answer = await conn.request(rpc("unsubscribe"))

    assert answer["result"]["topics"] == []
    assert service.events.subscriber_count == 0


async def test_slow_subscriber_gets_dropped_notice(sock_path: Path) -> None:
    """A backlog of 5 overflows when 10 events are published in one step."""
    service = FakeService()
    async with running_server(service, sock_path, max_subscription_backlog=5) as h:
        slow = await h.connect()
        await subscribe(slow, "video.added")
        for index in range(10):
            service.events.publish("video.added", {"id": index})
        notice = await slow.receive_json()
        closed = await slow.is_closed_by_server()
        other = await h.connect()
        after = await other.request(rpc("ping", id=2))

    assert notice["method"] == "subscription.dropped"
    assert notice["params"]["reason"] == "backlog_full"
    assert notice["params"]["limit"] == 5
    assert closed
    assert after["result"] == "pong"
    assert service.events.subscriber_count == 0


async def test_subscriber_is_not_idle(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path, idle_timeout_s=0.2) as harness:
        conn = await harness.connect()
        await subscribe(conn, "root.state")
        await anyio.sleep(0.5)
        service.events.publish("root.state", {"path": "/srv/media/tv"})
        notification = await conn.receive_json()

    assert notification["params"] == {"path": "/srv/media/tv"}


async def test_half_close_flushes_notifications(sock_path: Path) -> None:
    """Subscribe and scan in one batch, then close the sending side."""
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        await conn.send_json(
            [
                rpc("subscribe", {"topics": ["job.updated"]}, id=1),
                rpc("scan", {"path": "/srv/media/tv"}, id=2),
            ]
        )
        await conn.stream.send_eof()
        responses = await conn.receive_json()
        notification = await conn.receive_json()
        closed = await conn.is_closed_by_server()

    assert [r["id"] for r in responses] == [1, 2]
    assert notification["method"] == "job.updated"
    assert closed


# ---------------------------------------------------------------------------
# Change cursors and file names that are not UTF-8


async def test_videos_list_carries_cursor(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("videos.list", {"limit": 1}))

    assert answer["result"]["cursor"] == "j1.5f0c3a1e9b2d4c6a.0"
    assert answer["result"]["removed"] == []
    assert answer["result"]["fresh_instance"] is False


async def test_since_returns_changes_and_removals(sock_path: Path) -> None:
    service = FakeService()
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        listing = await conn.request(rpc("videos.list", id=1))
        service.remove_video("/srv/media/tv/show/notes.avi")
        service.add_video(
            Video(id=7, path="/srv/media/tv/new.mp4", size=10, mtime_ns=1)
        )
        since = listing["result"]["cursor"]
        changes = await conn.request(rpc("videos.list", {"since": since}, id=2))
        again = await conn.request(
            rpc("videos.list", {"since": changes["result"]["cursor"]}, id=3)
        )

    result = changes["result"]
    assert [v["path"] for v in result["videos"]] == ["/srv/media/tv/new.mp4"]
    assert result["removed"] == [{"id": 3, "path": "/srv/media/tv/show/notes.avi"}]
    assert result["fresh_instance"] is False
    assert again["result"]["videos"] == []
    assert again["result"]["removed"] == []


async def test_since_from_other_instance_is_fresh(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(
            rpc("videos.list", {"since": "j1.00000000deadbeef.5"})
        )

    assert answer["result"]["fresh_instance"] is True
    assert answer["result"]["cursor"] == "j1.5f0c3a1e9b2d4c6a.0"


@pytest.mark.parametrize("since", ["bogus", "j1.5f0c3a1e9b2d4c6a.99"])
async def test_bad_since_is_32602(sock_path: Path, since: str) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("videos.list", {"since": since}))

    assert answer["error"]["code"] == -32602
    assert since in answer["error"]["message"]


async def test_since_with_cursor_is_32602(sock_path: Path) -> None:
    async with running_server(FakeService(), sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(
            rpc("videos.list", {"since": "j1.5f0c3a1e9b2d4c6a.0", "cursor": "1"})
        )

    assert answer["error"]["code"] == -32602
    assert "not both" in answer["error"]["message"]


async def test_non_utf8_path_is_sent_with_bytes(sock_path: Path) -> None:
    raw = b"/srv/media/tv/caf\xe9.mkv"
    service = FakeService()
    service.add_video(Video(id=8, path=os.fsdecode(raw), size=1, mtime_ns=1))
    async with running_server(service, sock_path) as harness:
        conn = await harness.connect()
        answer = await conn.request(rpc("videos.list", {"under": "/srv/media/tv"}))

    [video] = [v for v in answer["result"]["videos"] if v["id"] == 8]
    assert video["path"] == "/srv/media/tv/caf\ufffd.mkv"
    assert base64.b64decode(video["path_bytes_b64"]) == raw
    others = [v for v in answer["result"]["videos"] if v["id"] != 8]
    assert all("path_bytes_b64" not in v for v in others)
