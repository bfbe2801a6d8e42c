"""Tests of the blocking and async clients against a server on a temporary socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from reelwatch.client import (
    AsyncClient,
    Client,
    ConnectionLost,
    DaemonNotRunning,
    ProtocolError,
    RpcError,
    default_socket_path,
)
from reelwatch.models import JobState, RootState
from rpc_doubles import FakeService, running_server, server_thread, short_socket_dir


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sock_path() -> Iterator[Path]:
    with short_socket_dir() as directory:
        yield directory / "rw.sock"


@pytest.fixture
def served(sock_path: Path) -> Iterator[Path]:
    with server_thread(FakeService(), sock_path):
        yield sock_path


class TestClient:
    def test_status_is_typed(self, served: Path) -> None:
        with Client(served) as client:
            status = client.status()

        assert status.version == "0.1.0"
        assert status.roots[1].path == "/srv/media/tv"
        assert status.roots[1].state == RootState.WATCHING
        assert status.videos == 3

    def test_calls_reuse_one_connection(self, sock_path: Path) -> None:
        service = FakeService()
        with server_thread(service, sock_path) as server, Client(sock_path) as client:
            client.ping()
            client.status()
            connections = server.active_connections

        assert connections == 1

    def test_scan_then_get_job(self, served: Path) -> None:
        with Client(served) as client:
            queued = client.scan("/srv/media/tv", recursive=False)
            job = client.get_job(queued.job_id)

        assert queued.status == JobState.PENDING
        assert job.id == queued.job_id
        assert job.path == "/srv/media/tv"
        assert job.params == {"recursive": False}

    def test_list_jobs_and_videos(self, served: Path) -> None:
        with Client(served) as client:
            failed = client.list_jobs(status=JobState.FAILED)
            page = client.list_videos(under="/srv/media/tv", limit=1)

        assert [job.id for job in failed] == [2]
        assert [video.path for video in page.videos] == ["/srv/media/tv/show/notes.avi"]
        assert page.next_cursor == "1"

    def test_call_returns_plain_values(self, served: Path) -> None:
        with Client(served) as client:
            result = client.call("jobs.list", {"limit": 1, "status": None})

        assert result["jobs"][0]["id"] == 2

    def test_rpc_error_carries_code_and_data(self, served: Path) -> None:
        with Client(served) as client:
            with pytest.raises(RpcError, match="job 42 not found") as caught:
                client.get_job(42)
            after = client.ping()

        assert caught.value.code == -32002
        assert caught.value.data == {"reason": "not_found"}
        assert caught.value.reason == "not_found"
        assert after == "pong"

    def test_unknown_method_is_rpc_error(self, served: Path) -> None:
        with Client(served) as client, pytest.raises(RpcError) as caught:
            client.call("videos.delete")

        assert caught.value.code == -32601

    def test_missing_socket_is_not_running(self, sock_path: Path) -> None:
        client = Client(sock_path)

        with pytest.raises(DaemonNotRunning, match="no socket at") as caught:
            client.ping()

        assert caught.value.socket_path == str(sock_path)
        assert str(sock_path) in str(caught.value)

    def test_stale_socket_is_not_running(self, sock_path: Path) -> None:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(sock_path))
        stale.close()
        client = Client(sock_path)

        with pytest.raises(DaemonNotRunning, match="nothing is listening"):
            client.ping()

    def test_server_closing_early_is_connection_lost(self, sock_path: Path) -> None:
        with OneShotServer(sock_path, b""), Client(sock_path) as client:
            with pytest.raises(ConnectionLost, match="closed the connection"):
                client.ping()

    def test_garbage_answer_is_protocol_error(self, sock_path: Path) -> None:
        with OneShotServer(sock_path, b"hello\n"), Client(sock_path) as client:
            with pytest.raises(ProtocolError, match="invalid response"):
                client.ping()

    def test_silent_server_times_out(self, sock_path: Path) -> None:
        with (
            OneShotServer(sock_path, None),
            Client(sock_path, timeout_s=0.2) as client,
        ):
            with pytest.raises(ConnectionLost, match="no response .* within 0.2 s"):
                client.ping()

    def test_connection_limit_refusal_is_rpc_error(self, sock_path: Path) -> None:
        with server_thread(FakeService(), sock_path, max_connections=1):
            with Client(sock_path) as first, Client(sock_path) as second:
                first.ping()
                with pytest.raises(RpcError) as caught:
                    second.ping()

        assert caught.value.code == -32004
        assert caught.value.reason == "too_many_connections"


class TestAsyncClient:
    @pytest.mark.anyio
    async def test_methods_return_typed_records(self, sock_path: Path) -> None:
        async with running_server(FakeService(), sock_path):
            async with AsyncClient(sock_path) as client:
                pong = await client.ping()
                status = await client.status()
                queued = await client.scan("/srv/media/movies")
                job = await client.get_job(queued.job_id)
                jobs = await client.list_jobs(limit=2)
                page = await client.list_videos(limit=2)

        assert pong == "pong"
        assert status.idle is True
        assert job.status == JobState.PENDING
        assert [j.id for j in jobs] == [3, 2]
        assert page.next_cursor == "2"

    @pytest.mark.anyio
    async def test_rpc_error_keeps_connection(self, sock_path: Path) -> None:
        async with running_server(FakeService(), sock_path):
            async with AsyncClient(sock_path) as client:
                with pytest.raises(RpcError) as caught:
                    await client.scan("/etc")
                pong = await client.ping()

        assert caught.value.code == -32001
        assert "'/etc'" in caught.value.message
        assert pong == "pong"

    @pytest.mark.anyio
    async def test_concurrent_calls_are_serialized(self, sock_path: Path) -> None:
        results: list[str] = []
        async with running_server(FakeService(), sock_path):
            async with AsyncClient(sock_path) as client:

                async def ping() -> None:
                    results.append(await client.ping())

                async with anyio.create_task_group() as task_group:
                    for _ in range(5):
                        task_group.start_soon(ping)

        assert results == ["pong"] * 5

    @pytest.mark.anyio
    async def test_missing_socket_is_not_running(self, sock_path: Path) -> None:
        client = AsyncClient(sock_path)

        with pytest.raises(DaemonNotRunning, match="no socket at"):
            await client.status()


def test_default_socket_prefers_runtime_dir(tmp_path: Path) -> None:
    environ = {"XDG_RUNTIME_DIR": str(tmp_path)}

    path = default_socket_path(environ)

    assert path == str(tmp_path / "reelwatch" / "reelwatch.sock")


def test_default_socket_without_runtime_dir() -> None:
    assert default_socket_path({}) == "/run/reelwatch/reelwatch.sock"


class OneShotServer:
    """A listener that sends ``reply`` (None: nothing) to one client, then closes."""

    def __init__(self, path: Path, reply: bytes | None) -> None:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._reply = reply
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.recv(65536)
            if self._reply is None:
                self._done.wait(10)
            else:
                conn.sendall(self._reply)

    def __enter__(self) -> OneShotServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(10)
        self._listener.close()
