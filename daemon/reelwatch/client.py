"""A small client for the control socket, blocking and async."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream
from msgspec import UNSET, UnsetType

from .models import Job, JobState, Status, VideoPage
from .protocol import (
    DEFAULT_PAGE_SIZE,
    ErrorObject,
    JobsListResult,
    RequestId,
    ScanResult,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AsyncClient",
    "Client",
    "ClientError",
    "ConnectionLost",
    "DaemonNotRunning",
    "ProtocolError",
    "RpcError",
    "default_socket_path",
]

DEFAULT_TIMEOUT_S: Final = 30.0
# Responses can be far larger than requests (a page of 1000 videos), but a
# reply past this size means something is wrong with the other end.
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
_READ_CHUNK_BYTES: Final = 65536

T = TypeVar("T")


class ClientError(Exception):
    """Base class of the errors this client raises."""


class DaemonNotRunning(ClientError):
    """Raised when the socket is missing or nothing listens on it."""

    def __init__(self, socket_path: str, detail: str) -> None:
        super().__init__(
            f"reelwatch daemon is not running: {detail} at {socket_path}; start it "
            "with 'reelwatch serve', or point --socket or REELWATCH_SOCKET at "
            "the right socket"
        )
        self.socket_path = socket_path


class ConnectionLost(ClientError):
    """Raised when the connection fails or closes before a response arrives."""


class ProtocolError(ClientError):
    """Raised when the daemon sends something that is not a valid response."""


class RpcError(ClientError):
    """Raised when the daemon responds to a request with a JSON-RPC error.

    ``code`` is the JSON-RPC error code and ``data`` the error's data member,
    whose ``reason`` key holds a stable tag.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def reason(self) -> str | None:
        reason = self.data.get("reason") if isinstance(self.data, dict) else None
        return reason if isinstance(reason, str) else None

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r}, {self.data!r})"


def default_socket_path(environ: Mapping[str, str] = os.environ) -> str:
    """Return the socket path used when neither an option nor a config names one.

    The candidates are ``$XDG_RUNTIME_DIR/reelwatch/reelwatch.sock`` (when the
    variable is set) and ``/run/reelwatch/reelwatch.sock``; the first that
    exists wins, else the first candidate is returned.
    """
    candidates = []
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        candidates.append(os.path.join(runtime_dir, "reelwatch", "reelwatch.sock"))
    candidates.append("/run/reelwatch/reelwatch.sock")
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate

    return candidates[0]


class _Message(msgspec.Struct):
    """Any message a server sends: a response, or a notification (no id)."""

    jsonrpc: str = ""
    id: RequestId | UnsetType = UNSET
    result: msgspec.Raw = msgspec.Raw()
    error: ErrorObject | None = None
    method: str | None = None


_message_decoder = msgspec.json.Decoder(_Message)
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder_for(result_type: Any) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(result_type)
    if decoder is None:
        decoder = _decoders[result_type] = msgspec.json.Decoder(result_type)
    return decoder


class _Codec:
    """Builds request lines and matches response lines, shared by both clients."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._ids = itertools.count(1)

    def request(
        self, method: str, params: Mapping[str, Any] | None
    ) -> tuple[int, bytes]:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            message["params"] = {k: v for k, v in params.items() if v is not None}

        return request_id, _encoder.encode(message) + b"\n"

    def response(self, line: bytes, request_id: int) -> msgspec.Raw | None:
        """Return the result for ``request_id``, or None for a line to skip.

        Raises:
            RpcError: the line carries an error for this request, or an error
                the server could not attach to any request (id null).
            ProtocolError: the line is not a JSON-RPC response.
        """
        try:
            message = _message_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ProtocolError(
                f"invalid response from {self.socket_path}: {exc}"
            ) from None
        if message.jsonrpc != "2.0":
            raise ProtocolError(
                f"invalid response from {self.socket_path}: not JSON-RPC 2.0"
            )
        if message.method is not None and isinstance(message.id, UnsetType):
            return None  # a server notification, not meant for this call
        if message.error is not None and message.id in (request_id, None):
            error = message.error
            raise RpcError(error.code, error.message, error.data)
        if message.id != request_id:
            return None
        if len(message.result) == 0:
            raise ProtocolError(
                f"invalid response from {self.socket_path}: neither result nor error"
            )

        return message.result

    def decode(self, result: msgspec.Raw, result_type: type[T]) -> T:
        try:
            decoded: T = _decoder_for(result_type).decode(result)
        except msgspec.ValidationError as exc:
            raise ProtocolError(
                f"unexpected result from {self.socket_path}: {exc}"
            ) from None
        return decoded

    def not_running(self, exc: OSError) -> ClientError:
        if isinstance(exc, FileNotFoundError):
            return DaemonNotRunning(self.socket_path, "no socket")
        if isinstance(exc, ConnectionRefusedError):
            return DaemonNotRunning(self.socket_path, "nothing is listening")
        if isinstance(exc, PermissionError):
            return ConnectionLost(
                f"permission denied connecting to {self.socket_path}; ask the "
                "administrator to add you to the socket's group"
            )
        return ConnectionLost(f"cannot connect to {self.socket_path}: {exc}")


class Client:
    """A blocking client; one request at a time over one connection.

    The connection opens on the first call and is reused; use the client as a
    context manager or call :meth:`close`.

    Args:
        socket_path: the daemon's control socket.
        timeout_s: how long to wait for connecting and for each response;
            None waits forever.
    """

    def __init__(
        self, socket_path: str | os.PathLike[str], *, timeout_s: float | None = None
    ) -> None:
        self._codec = _Codec(os.fspath(socket_path))
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    @property
    def socket_path(self) -> str:
        return self._codec.socket_path

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its result as plain Python values.

        Params whose value is None are left out of the request.

        Raises:
            DaemonNotRunning: the socket is missing or nothing listens on it.
            RpcError: the daemon returned an error.
            ConnectionLost: the connection failed or closed, or timed out.
            ProtocolError: the answer is not a valid JSON-RPC response.
        """
        return self._call(method, params, object)

    def ping(self) -> str:
        """Check that the daemon responds; returns ``"pong"``."""
        return self._call("ping", None, str)

    def status(self) -> Status:
        """Return the daemon's status."""
        return self._call("status", None, Status)

    def scan(self, path: str, *, recursive: bool = True) -> ScanResult:
        """Queue a scan of ``path`` and return the job's id and state."""
        return self._call("scan", {"path": path, "recursive": recursive}, ScanResult)

    def get_job(self, job_id: int) -> Job:
        """Return one job; an unknown id raises :class:`RpcError` -32002."""
        return self._call("job.get", {"job_id": job_id}, Job)

    def list_jobs(
        self, *, status: JobState | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Job]:
        """Return the newest jobs first, optionally only those in ``status``."""
        params = {"status": status, "limit": limit}
        return self._call("jobs.list", params, JobsListResult).jobs

    def list_videos(
        self,
        *,
        under: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> VideoPage:
        """Return one page of the catalog in path order."""
        params = {"under": under, "limit": limit, "cursor": cursor}
        return self._call("videos.list", params, VideoPage)

    def _call(
        self, method: str, params: Mapping[str, Any] | None, result_type: type[T]
    ) -> T:
        request_id, line = self._codec.request(method, params)
        sock = self._connect()
        try:
            sock.sendall(line)
            while True:
                result = self._codec.response(self._read_line(sock), request_id)
                if result is not None:
                    return self._codec.decode(result, result_type)
        except (OSError, ClientError) as exc:
            # After a failure the stream may hold half a message, so the next
            # call starts on a fresh connection. RpcError leaves it intact.
            if not isinstance(exc, RpcError):
                self.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionLost(
                    f"no response from {self.socket_path} within {self.timeout_s} s"
                ) from None
            if isinstance(exc, OSError):
                raise ConnectionLost(
                    f"connection to {self.socket_path} failed: {exc}"
                ) from None
            raise

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                sock.close()
                raise self._codec.not_running(exc) from None
            self._sock = sock
        return self._sock

    def _read_line(self, sock: socket.socket) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise ProtocolError(
                    f"response from {self.socket_path} exceeds "
                    f"{MAX_RESPONSE_BYTES} bytes"
                )
            chunk = sock.recv(_READ_CHUNK_BYTES)
            if not chunk:
                raise ConnectionLost(
                    f"{self.socket_path} closed the connection before answering"
                )
            self._buffer.extend(chunk)


class AsyncClient:
    """The async twin of :class:`Client`, for anyio (asyncio or trio).

    Calls on one client are serialized; open several clients for parallel
    requests.
    """

    def __init__(
        self, socket_path: str | os.PathLike[str], *, timeout_s: float | None = None
    ) -> None:
        self._codec = _Codec(os.fspath(socket_path))
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self._stream: anyio.abc.SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._lock = anyio.Lock()

    @property
    def socket_path(self) -> str:
        return self._codec.socket_path

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; a later call opens a new one."""
        if self._stream is not None:
            stream, self._stream, self._reader = self._stream, None, None
            await stream.aclose()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its result; see :meth:`Client.call`."""
        return await self._call(method, params, object)

    async def ping(self) -> str:
        return await self._call("ping", None, str)

    async def status(self) -> Status:
        return await self._call("status", None, Status)

    async def scan(self, path: str, *, recursive: bool = True) -> ScanResult:
        params = {"path": path, "recursive": recursive}
        return await self._call("scan", params, ScanResult)

    async def get_job(self, job_id: int) -> Job:
        return await self._call("job.get", {"job_id": job_id}, Job)

    async def list_jobs(
        self, *, status: JobState | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Job]:
        params = {"status": status, "limit": limit}
        return (await self._call("jobs.list", params, JobsListResult)).jobs

    async def list_videos(
        self,
        *,
        under: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> VideoPage:
        params = {"under": under, "limit": limit, "cursor": cursor}
        return await self._call("videos.list", params, VideoPage)

    async def _call(
        self, method: str, params: Mapping[str, Any] | None, result_type: type[T]
    ) -> T:
        request_id, line = self._codec.request(method, params)
        async with self._lock:
            try:
                with anyio.fail_after(self.timeout_s):
                    reader = await self._connect()
                    assert self._stream is not None
                    await self._stream.send(line)
                    while True:
                        raw_line = await reader.receive_until(b"\n", MAX_RESPONSE_BYTES)
                        result = self._codec.response(raw_line, request_id)
                        if result is not None:
                            return self._codec.decode(result, result_type)
            except RpcError:
                raise
            except (
                ClientError,
                TimeoutError,
                OSError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.DelimiterNotFound,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ) as exc:
                # The stream may hold half a message, so the next call starts
                # on a fresh connection.
                await self.aclose()
                raise self._translate(exc) from None

    async def _connect(self) -> BufferedByteReceiveStream:
        if self._reader is None:
            try:
                self._stream = await anyio.connect_unix(self.socket_path)
            except OSError as exc:
                raise self._codec.not_running(exc) from None
            self._reader = BufferedByteReceiveStream(self._stream)
        return self._reader

    def _translate(self, exc: BaseException) -> ClientError:
        if isinstance(exc, ClientError):
            return exc
        if isinstance(exc, TimeoutError):
            return ConnectionLost(
                f"no response from {self.socket_path} within {self.timeout_s} s"
            )
        if isinstance(exc, anyio.DelimiterNotFound):
            return ProtocolError(
                f"response from {self.socket_path} exceeds {MAX_RESPONSE_BYTES} bytes"
            )
        if isinstance(exc, anyio.IncompleteRead | anyio.EndOfStream):
            return ConnectionLost(
                f"{self.socket_path} closed the connection before answering"
            )
        return ConnectionLost(f"connection to {self.socket_path} failed: {exc}")
