"""A small client for the control socket, blocking and async.

Both clients send one request at a time on one connection, which opens on the
first call. :meth:`Client.subscribe` and :meth:`AsyncClient.subscribe` open a
connection of their own that yields server notifications.

Paths that are not valid UTF-8 come back exactly as the file system has them
(as ``str`` with surrogate escapes, like :func:`os.fsdecode` makes them): the
server sends them with a ``*_bytes_b64`` companion member, which the client
decodes.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream
from msgspec import UNSET, UnsetType

from .models import Job, JobState, Status, Video
from .protocol import (
    DEFAULT_PAGE_SIZE,
    CatalogStats,
    ErrorObject,
    JobsListResult,
    RequestId,
    RescanResult,
    ScanResult,
    SubscribeResult,
    VideosListResult,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AsyncClient",
    "AsyncSubscription",
    "Client",
    "ClientError",
    "ConnectionLost",
    "DaemonNotRunning",
    "Notification",
    "ProtocolError",
    "RpcError",
    "Subscription",
    "SubscriptionDropped",
    "default_socket_path",
]

DEFAULT_TIMEOUT_S: Final = 30.0
# Responses can be far larger than requests (a page of 1000 videos), but a
# reply past this size means something is wrong with the other end.
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
_READ_CHUNK_BYTES: Final = 65536
_WIRE_BYTES_SUFFIX: Final = "_bytes_b64"
# Extra seconds a sync read may take beyond its own timeout: the scan and the
# response still have to arrive after the daemon gives up.
_SYNC_GRACE_S: Final = 10.0

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


class SubscriptionDropped(ClientError):
    """Raised by a subscription's iterator after the daemon dropped it.

    The daemon drops a subscriber whose unread notifications exceed its
    backlog limit; ``message`` is the daemon's explanation.
    """


class Notification(msgspec.Struct, frozen=True):
    """A notification the daemon pushed: its method (topic) and params."""

    method: str
    params: Any = None


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
    params: msgspec.Raw = msgspec.Raw()


_message_decoder = msgspec.json.Decoder(_Message)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder_for(result_type: Any) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(result_type)
    if decoder is None:
        decoder = _decoders[result_type] = msgspec.json.Decoder(result_type)
    return decoder


def _from_wire(value: Any) -> Any:
    """Put back the exact strings that the server sent as ``*_bytes_b64``."""
    if isinstance(value, list):
        return [_from_wire(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: _from_wire(item) for key, item in value.items()}
    for key, item in value.items():
        base = key.removesuffix(_WIRE_BYTES_SUFFIX)
        if base != key and base in result and isinstance(item, str):
            try:
                result[base] = os.fsdecode(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                continue
            del result[key]
    return result


def _path_params(name: str, path: str) -> dict[str, str]:
    """Send ``path`` as ``name``, or as ``name_bytes_b64`` if it is not UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return {name + _WIRE_BYTES_SUFFIX: base64.b64encode(os.fsencode(path)).decode()}
    return {name: path}


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

    def parse(self, line: bytes) -> _Message | None:
        """Decode one line; None for a blank line, which carries nothing.

        Raises:
            ProtocolError: the line is not a JSON-RPC 2.0 message.
        """
        if not line.strip():
            return None
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
        return message

    def response(self, line: bytes, request_id: int) -> msgspec.Raw | None:
        """Return the result for ``request_id``, or None for a line to skip.

        Raises:
            RpcError: the line carries an error for this request, or an error
                the server could not attach to any request (id null).
            ProtocolError: the line is not a JSON-RPC response.
        """
        message = self.parse(line)
        if message is None:
            return None
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

    def notification(self, line: bytes) -> Notification | None:
        """Return the notification on ``line``, or None for anything else.

        Raises:
            RpcError: an error the server could not attach to a request.
            ProtocolError: the line is not a JSON-RPC message.
        """
        message = self.parse(line)
        if message is None:
            return None
        if message.error is not None and message.id is None:
            raise RpcError(
                message.error.code, message.error.message, message.error.data
            )
        if message.method is None or not isinstance(message.id, UnsetType):
            return None
        params = _any_decoder.decode(message.params) if len(message.params) else None
        return Notification(message.method, _from_wire(params))

    def decode(self, result: msgspec.Raw, result_type: type[T]) -> T:
        try:
            if _WIRE_BYTES_SUFFIX.encode() in bytes(result):
                plain = _from_wire(_any_decoder.decode(result))
                converted: T = msgspec.convert(plain, result_type)
                return converted
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


def _videos_params(
    under: str | None,
    limit: int,
    cursor: str | None,
    since: str | None,
    sync: bool,
    sync_timeout_s: float | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "cursor": cursor, "since": since}
    if under is not None:
        params.update(_path_params("under", under))
    if sync:
        params["sync"] = True
        params["sync_timeout_s"] = sync_timeout_s
    return params


def _video_params(
    path: str, sync: bool, sync_timeout_s: float | None
) -> dict[str, Any]:
    params: dict[str, Any] = _path_params("path", path)
    if sync:
        params["sync"] = True
        params["sync_timeout_s"] = sync_timeout_s
    return params


def _status_params(sync: bool, sync_timeout_s: float | None) -> dict[str, Any] | None:
    return {"sync": True, "sync_timeout_s": sync_timeout_s} if sync else None


class _LineSocket:
    """A blocking socket that reads whole lines."""

    def __init__(self, codec: _Codec, timeout_s: float | None) -> None:
        self._codec = codec
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self._buffer = bytearray()

    def connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self._codec.socket_path)
            except OSError as exc:
                sock.close()
                raise self._codec.not_running(exc) from None
            self.sock = sock
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buffer.clear()

    def read_line(self) -> bytes:
        sock = self.connect()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise ProtocolError(
                    f"response from {self._codec.socket_path} exceeds "
                    f"{MAX_RESPONSE_BYTES} bytes"
                )
            chunk = sock.recv(_READ_CHUNK_BYTES)
            if not chunk:
                raise ConnectionLost(
                    f"{self._codec.socket_path} closed the connection before answering"
                )
            self._buffer.extend(chunk)


class Client:
    """A blocking client; one request at a time over one connection.

    The connection opens on the first call and is reused; use the client as a
    context manager or call :meth:`close`.

    Args:
        socket_path: the daemon's control socket.
        timeout_s: how long to wait for connecting and for each response;
            None means :data:`DEFAULT_TIMEOUT_S`. A ``sync`` read waits
            for its own ``sync_timeout_s`` plus a grace period instead.
    """

    def __init__(
        self, socket_path: str | os.PathLike[str], *, timeout_s: float | None = None
    ) -> None:
        self._codec = _Codec(os.fspath(socket_path))
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self._line_socket = _LineSocket(self._codec, self.timeout_s)

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
        self._line_socket.close()

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

    def status(
        self, *, sync: bool = False, sync_timeout_s: float | None = None
    ) -> Status:
        """Return the daemon's status; ``sync`` first waits for pending changes."""
        params = _status_params(sync, sync_timeout_s)
        return self._call("status", params, Status, sync_timeout_s if sync else None)

    def scan(self, path: str, *, recursive: bool = True) -> ScanResult:
        """Queue a scan of ``path`` and return the job's id and state."""
        params = {**_path_params("path", path), "recursive": recursive}
        return self._call("scan", params, ScanResult)

    def rescan(self, root: str | None = None) -> list[ScanResult]:
        """Queue a full scan of one root, or of every root."""
        params = None if root is None else _path_params("root", root)
        return self._call("rescan", params, RescanResult).jobs

    def get_job(self, job_id: int) -> Job:
        """Return one job; an unknown id raises :class:`RpcError` -32002."""
        return self._call("job.get", {"job_id": job_id}, Job)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job; a running one stops at its next batch of files."""
        return self._call("job.cancel", {"job_id": job_id}, Job)

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
        since: str | None = None,
        sync: bool = False,
        sync_timeout_s: float | None = None,
    ) -> VideosListResult:
        """Return one page of the catalog in path order, or the changes ``since``."""
        params = _videos_params(under, limit, cursor, since, sync, sync_timeout_s)
        wait = sync_timeout_s if sync else None
        return self._call("videos.list", params, VideosListResult, wait)

    def get_video(
        self, path: str, *, sync: bool = False, sync_timeout_s: float | None = None
    ) -> Video:
        """Return the catalog entry of one file."""
        params = _video_params(path, sync, sync_timeout_s)
        return self._call("video.get", params, Video, sync_timeout_s if sync else None)

    def stats(self, *, under: str | None = None) -> CatalogStats:
        """Return catalog totals."""
        params = None if under is None else _path_params("under", under)
        return self._call("stats", params, CatalogStats)

    def config(self) -> dict[str, Any]:
        """Return the daemon's effective configuration."""
        return self._call("config.get", None, dict[str, Any])

    def metrics(self) -> str:
        """Return the daemon's metrics in the Prometheus text format."""
        return self._call("metrics", None, str)

    def subscribe(self, topics: Iterable[str]) -> Subscription:
        """Subscribe to ``topics`` on a new connection; iterate to receive."""
        subscription = Subscription(self.socket_path, list(topics))
        try:
            subscription.start()
        except BaseException:
            subscription.close()
            raise
        return subscription

    def _call(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        result_type: type[T],
        sync_timeout_s: float | None = None,
    ) -> T:
        line_socket = self._line_socket
        request_id, line = self._codec.request(method, params)
        timeout_s = _response_timeout(self.timeout_s, sync_timeout_s)
        try:
            sock = line_socket.connect()
            sock.settimeout(timeout_s)
            self._send(line_socket, sock, line, request_id)
            while True:
                result = self._codec.response(line_socket.read_line(), request_id)
                if result is not None:
                    return self._codec.decode(result, result_type)
        except (OSError, ClientError) as exc:
            # After a failure the stream may hold half a message, so the next
            # call starts on a fresh connection. RpcError leaves it intact.
            if not isinstance(exc, RpcError | DaemonNotRunning):
                line_socket.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionLost(
                    f"no response from {self.socket_path} within {timeout_s} s"
                ) from None
            if isinstance(exc, OSError):
                raise ConnectionLost(
                    f"connection to {self.socket_path} failed: {exc}"
                ) from None
            raise

    def _send(
        self,
        line_socket: _LineSocket,
        sock: socket.socket,
        line: bytes,
        request_id: int,
    ) -> None:
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may have refused the connection (too many clients)
            # and closed it; its explanation is still in the receive buffer.
            sock.settimeout(1.0)
            try:
                self._codec.response(line_socket.read_line(), request_id)
            except (OSError, ConnectionLost, ProtocolError):
                pass
            raise


def _response_timeout(timeout_s: float, sync_timeout_s: float | None) -> float:
    if sync_timeout_s is None:
        return timeout_s
    return max(timeout_s, sync_timeout_s + _SYNC_GRACE_S)


class Subscription:
    """A blocking iterator over the notifications of one subscription.

    It owns its connection; close it (or leave its ``with`` block) to stop.
    Iteration ends when the daemon closes the connection, and raises
    :class:`SubscriptionDropped` when the daemon dropped this subscriber.
    """

    def __init__(self, socket_path: str, topics: list[str]) -> None:
        self._codec = _Codec(socket_path)
        self._topics = topics
        # Notifications may be minutes apart, so reads wait indefinitely.
        self._line_socket = _LineSocket(self._codec, None)
        self.topics: list[str] = []

    def start(self) -> None:
        """Send ``subscribe`` and wait for its response.

        Raises:
            RpcError: the daemon rejected the subscription.
        """
        request_id, line = self._codec.request("subscribe", {"topics": self._topics})
        sock = self._line_socket.connect()
        sock.settimeout(DEFAULT_TIMEOUT_S)
        sock.sendall(line)
        while True:
            result = self._codec.response(self._line_socket.read_line(), request_id)
            if result is not None:
                self.topics = self._codec.decode(result, SubscribeResult).topics
                break
        sock.settimeout(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, which ends the subscription."""
        self._line_socket.close()

    def __iter__(self) -> Iterator[Notification]:
        while True:
            try:
                line = self._line_socket.read_line()
            except ConnectionLost:
                return
            except OSError as exc:
                raise ConnectionLost(f"subscription connection failed: {exc}") from None
            notification = self._codec.notification(line)
            if notification is None:
                continue
            if notification.method == "subscription.dropped":
                raise SubscriptionDropped(_drop_message(notification))
            yield notification


def _drop_message(notification: Notification) -> str:
    params = notification.params if isinstance(notification.params, dict) else {}
    message = params.get("message")
    return f"the daemon dropped this subscription: {message or 'backlog full'}"


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

    async def status(
        self, *, sync: bool = False, sync_timeout_s: float | None = None
    ) -> Status:
        params = _status_params(sync, sync_timeout_s)
        wait = sync_timeout_s if sync else None
        return await self._call("status", params, Status, wait)

    async def scan(self, path: str, *, recursive: bool = True) -> ScanResult:
        params = {**_path_params("path", path), "recursive": recursive}
        return await self._call("scan", params, ScanResult)

    async def rescan(self, root: str | None = None) -> list[ScanResult]:
        params = None if root is None else _path_params("root", root)
        return (await self._call("rescan", params, RescanResult)).jobs

    async def get_job(self, job_id: int) -> Job:
        return await self._call("job.get", {"job_id": job_id}, Job)

    async def cancel_job(self, job_id: int) -> Job:
        return await self._call("job.cancel", {"job_id": job_id}, Job)

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
        since: str | None = None,
        sync: bool = False,
        sync_timeout_s: float | None = None,
    ) -> VideosListResult:
        params = _videos_params(under, limit, cursor, since, sync, sync_timeout_s)
        wait = sync_timeout_s if sync else None
        return await self._call("videos.list", params, VideosListResult, wait)

    async def get_video(
        self, path: str, *, sync: bool = False, sync_timeout_s: float | None = None
    ) -> Video:
        params = _video_params(path, sync, sync_timeout_s)
        wait = sync_timeout_s if sync else None
        return await self._call("video.get", params, Video, wait)

    async def stats(self, *, under: str | None = None) -> CatalogStats:
        params = None if under is None else _path_params("under", under)
        return await self._call("stats", params, CatalogStats)

    async def config(self) -> dict[str, Any]:
        return await self._call("config.get", None, dict[str, Any])

    async def metrics(self) -> str:
        return await self._call("metrics", None, str)

    async def subscribe(self, topics: Iterable[str]) -> AsyncSubscription:
        """Subscribe to ``topics`` on a new connection; iterate to receive."""
        subscription = AsyncSubscription(self.socket_path, list(topics))
        try:
            await subscription.start()
        except BaseException:
            await subscription.aclose()
            raise
        return subscription

    async def _call(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        result_type: type[T],
        sync_timeout_s: float | None = None,
    ) -> T:
        request_id, line = self._codec.request(method, params)
        timeout_s = _response_timeout(self.timeout_s, sync_timeout_s)
        async with self._lock:
            try:
                with anyio.fail_after(timeout_s):
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
                raise _translate(self.socket_path, exc, timeout_s) from None

    async def _connect(self) -> BufferedByteReceiveStream:
        if self._reader is None:
            try:
                self._stream = await anyio.connect_unix(self.socket_path)
            except OSError as exc:
                raise self._codec.not_running(exc) from None
            self._reader = BufferedByteReceiveStream(self._stream)
        return self._reader


class AsyncSubscription:
    """The async twin of :class:`Subscription`: ``async for`` notifications."""

    def __init__(self, socket_path: str, topics: list[str]) -> None:
        self._codec = _Codec(socket_path)
        self._topics = topics
        self._stream: anyio.abc.SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self.topics: list[str] = []

    async def start(self) -> None:
        """Send ``subscribe`` and wait for its response.

        Raises:
            RpcError: the daemon rejected the subscription.
        """
        request_id, line = self._codec.request("subscribe", {"topics": self._topics})
        try:
            self._stream = await anyio.connect_unix(self._codec.socket_path)
        except OSError as exc:
            raise self._codec.not_running(exc) from None
        self._reader = BufferedByteReceiveStream(self._stream)
        try:
            with anyio.fail_after(DEFAULT_TIMEOUT_S):
                await self._stream.send(line)
                while True:
                    raw = await self._reader.receive_until(b"\n", MAX_RESPONSE_BYTES)
                    result = self._codec.response(raw, request_id)
                    if result is not None:
                        break
        except (
            TimeoutError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
        ) as exc:
            raise _translate(self._codec.socket_path, exc, DEFAULT_TIMEOUT_S) from None
        self.topics = self._codec.decode(result, SubscribeResult).topics

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection, which ends the subscription."""
        if self._stream is not None:
            stream, self._stream, self._reader = self._stream, None, None
            await stream.aclose()

    async def __aiter__(self) -> AsyncIterator[Notification]:
        while self._reader is not None:
            try:
                line = await self._reader.receive_until(b"\n", MAX_RESPONSE_BYTES)
            except (
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return
            except anyio.DelimiterNotFound:
                raise ProtocolError(
                    f"notification from {self._codec.socket_path} exceeds "
                    f"{MAX_RESPONSE_BYTES} bytes"
                ) from None
            notification = self._codec.notification(line)
            if notification is None:
                continue
            if notification.method == "subscription.dropped":
                raise SubscriptionDropped(_drop_message(notification))
            yield notification


def _translate(socket_path: str, exc: BaseException, timeout_s: float) -> ClientError:
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, TimeoutError):
        return ConnectionLost(f"no response from {socket_path} within {timeout_s} s")
    if isinstance(exc, anyio.DelimiterNotFound):
        return ProtocolError(
            f"response from {socket_path} exceeds {MAX_RESPONSE_BYTES} bytes"
        )
    if isinstance(exc, anyio.IncompleteRead | anyio.EndOfStream):
        return ConnectionLost(f"{socket_path} closed the connection before answering")
    return ConnectionLost(f"connection to {socket_path} failed: {exc}")
