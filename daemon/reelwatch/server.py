"""The control socket server: JSON-RPC 2.0 over a Unix socket, one message per line."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import select
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import anyio.abc
import msgspec
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream

from .errors import (
    ConfigError,
    ControlSocketError,
    DaemonError,
    InvalidParamsError,
    NotFoundError,
    PermissionDeniedError,
)
from .events import Subscription, SubscriptionDropped
from .models import Job, Status, Video
from .protocol import (
    CatalogStats,
    ErrorCode,
    ErrorObject,
    ErrorResponse,
    InvalidEntry,
    JobCancelParams,
    JobGetParams,
    JobsListParams,
    JobsListResult,
    MalformedParamsError,
    NoParams,
    ParamsError,
    ParsedLine,
    Request,
    RequestId,
    RescanParams,
    RescanResult,
    Response,
    ScanParams,
    ScanResult,
    StatsParams,
    StatusParams,
    SubscribeParams,
    SubscribeResult,
    SuccessResponse,
    UnsubscribeParams,
    VideoGetParams,
    VideosListParams,
    VideosListResult,
    decode_params,
    encode_message,
    encode_notification,
    error_from_exception,
    make_error,
    optional_path_from_wire,
    parse_line,
    path_from_wire,
)
from .service import Service

__all__ = [
    "METHODS",
    "PRIVILEGED_METHODS",
    "AccessPolicy",
    "ControlServer",
    "PeerCredentials",
    "SocketOptions",
    "describe_config",
]

log = structlog.get_logger("reelwatch.server")

PRIVILEGED_METHODS: Final = frozenset({"scan", "rescan", "job.cancel"})
"""Methods that change what the daemon does; see :class:`AccessPolicy`."""

# struct ucred from <sys/socket.h>: pid_t, uid_t, gid_t, all 32-bit on Linux.
_UCRED: Final = struct.Struct("3i")

# accept() fails with these when the process or system is out of descriptors
# or buffers; they pass once other connections close, so the loop backs off
# instead of stopping the server.
_TRANSIENT_ACCEPT_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)
_ACCEPT_BACKOFF_S: Final = 0.1
_REJECTION_SEND_TIMEOUT_S: Final = 1.0
# A dropped subscriber gets this long to take its final notice.
_DROP_NOTICE_TIMEOUT_S: Final = 1.0

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
FileMode = Annotated[int, msgspec.Meta(ge=0, le=0o7777)]


class SocketOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the control socket, with the defaults used when unset.

    ``mode`` and ``group`` set the socket file's permissions and group.
    ``control_group`` names the group whose members may call the methods in
    :data:`PRIVILEGED_METHODS` besides root and the daemon's user.
    ``max_subscription_backlog`` is the number of notifications a subscriber
    may leave unread before it is disconnected.
    """

    mode: FileMode = 0o600
    group: str | None = None
    control_group: str | None = None
    max_line_bytes: PositiveInt = 1024 * 1024
    max_connections: PositiveInt = 128
    max_requests_in_flight: PositiveInt = 32
    max_batch_requests: PositiveInt = 100
    max_subscription_backlog: PositiveInt = 1000
    idle_timeout_s: PositiveFloat = 300.0
    send_timeout_s: PositiveFloat = 30.0
    backlog: PositiveInt = 128

    @classmethod
    def from_config(cls, section: object | None) -> SocketOptions:
        """Build options from the ``socket`` section of the configuration.

        Any object with some of the field names as attributes works; missing or
        None attributes keep their defaults. ``mode`` may be an octal string
        such as ``"0660"``.

        Raises:
            ConfigError: a value is out of range or ``mode`` is not octal.
        """
        if section is None:
            return cls()
        if isinstance(section, cls):
            return section

        values: dict[str, Any] = {}
        for field in msgspec.structs.fields(cls):
            value = getattr(section, field.name, None)
            if value is not None:
                values[field.name] = value
        if isinstance(values.get("mode"), str):
            values["mode"] = _parse_mode(values["mode"])
        try:
            return msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            detail = str(exc).replace("`$", "`socket")
            raise ConfigError(f"config: invalid socket setting: {detail}") from None


def describe_config(config: msgspec.Struct) -> dict[str, Any]:
    """Return a configuration as plain values for ``config.get``.

    The ``socket`` section shows every setting the server uses, defaults
    included, with ``mode`` as an octal string; ``database_path`` is added.
    The configuration holds no secrets, so nothing is left out.
    """
    values: dict[str, Any] = msgspec.to_builtins(config)
    options = SocketOptions.from_config(getattr(config, "socket", None))
    socket_values: dict[str, Any] = msgspec.to_builtins(options)
    socket_values["mode"] = f"{options.mode:04o}"
    values["socket"] = socket_values
    database_path = getattr(config, "database_path", None)
    if isinstance(database_path, str):
        values["database_path"] = database_path
    return values


@dataclass(frozen=True)
class PeerCredentials:
    """The process on the other end of a connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int

    @classmethod
    def from_socket(cls, sock: socket.socket) -> PeerCredentials:
        """Read SO_PEERCRED from a connected Unix socket.

        Raises:
            OSError: the socket does not support SO_PEERCRED.
        """
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
        return cls(pid=pid, uid=uid, gid=gid)


class AccessPolicy:
    """Decides who may call the methods in :data:`PRIVILEGED_METHODS`.

    Reading methods are open to every peer that can connect; the socket's mode
    and group decide who that is. Privileged methods are allowed to root, to
    the daemon's own user, and to members of ``control_group`` (primary or
    supplementary group, looked up in the user database).
    """

    def __init__(self, *, control_group: str | None, daemon_uid: int | None = None):
        self.daemon_uid = os.geteuid() if daemon_uid is None else daemon_uid
        self.control_group = control_group
        self.control_gid = (
            None
            if control_group is None
            else _lookup_gid(control_group, "socket.control_group")
        )

    def describe_rule(self) -> str:
        """Describe in words who may call privileged methods."""
        allowed = f"root or the daemon's user (uid {self.daemon_uid})"
        if self.control_group is not None:
            allowed = (
                f"root, the daemon's user (uid {self.daemon_uid}) or members "
                f"of group '{self.control_group}'"
            )
        return allowed

    def is_allowed(self, peer: PeerCredentials | None) -> bool:
        """Tell whether ``peer`` may call privileged methods.

        This may query the user database, so async callers run it in a thread.
        """
        if peer is None:
            return False
        if peer.uid in (0, self.daemon_uid):
            return True
        if self.control_gid is None:
            return False
        if peer.gid == self.control_gid:
            return True

        return self.control_gid in _groups_of(peer.uid, peer.gid)

    def denial(
        self, method: str, peer: PeerCredentials | None
    ) -> PermissionDeniedError:
        """Build the error sent when ``peer`` may not call ``method``."""
        caller = (
            "the caller's credentials are unknown"
            if peer is None
            else f"the caller is uid {peer.uid}, gid {peer.gid}"
        )
        return PermissionDeniedError(
            f"permission denied: method '{method}' is allowed only to "
            f"{self.describe_rule()}; {caller}"
        )


@dataclass(frozen=True)
class _Method:
    params_type: type[msgspec.Struct]
    call: Callable[[Service, Any], Awaitable[Any]]


async def _ping(service: Service, params: NoParams) -> str:
    return "pong"


async def _status(service: Service, params: StatusParams) -> Status:
    return await service.status(sync=params.sync, sync_timeout_s=params.sync_timeout_s)


async def _scan(service: Service, params: ScanParams) -> ScanResult:
    path = path_from_wire(params.path, params.path_bytes_b64, name="path")
    job = await service.scan(path, recursive=params.recursive)
    return ScanResult(job_id=job.id, status=job.status, path=job.path)


async def _rescan(service: Service, params: RescanParams) -> RescanResult:
    root = optional_path_from_wire(params.root, params.root_bytes_b64, name="root")
    jobs = await service.rescan(root)
    return RescanResult(
        jobs=[
            ScanResult(job_id=job.id, status=job.status, path=job.path) for job in jobs
        ]
    )


async def _job_get(service: Service, params: JobGetParams) -> Job:
    return await service.get_job(params.job_id)


async def _job_cancel(service: Service, params: JobCancelParams) -> Job:
    return await service.cancel_job(params.job_id)


async def _jobs_list(service: Service, params: JobsListParams) -> JobsListResult:
    jobs = await service.list_jobs(status=params.status, limit=params.limit)
    return JobsListResult(jobs=jobs)


async def _videos_list(service: Service, params: VideosListParams) -> VideosListResult:
    under = optional_path_from_wire(params.under, params.under_bytes_b64, name="under")
    if params.since is not None:
        if params.cursor is not None:
            raise InvalidParamsError(
                "pass either cursor (to page through a listing) or since (to get "
                "changes), not both"
            )
        return await service.list_changes(
            since=params.since,
            under=under,
            limit=params.limit,
            sync=params.sync,
            sync_timeout_s=params.sync_timeout_s,
        )

    # The position is taken before the read, so a change made while the page
    # is read shows up again after it rather than never.
    cursor = service.change_cursor()
    page = await service.list_videos(
        under=under,
        limit=params.limit,
        cursor=params.cursor,
        sync=params.sync,
        sync_timeout_s=params.sync_timeout_s,
    )
    return VideosListResult(
        videos=page.videos, next_cursor=page.next_cursor, cursor=cursor
    )


async def _video_get(service: Service, params: VideoGetParams) -> Video:
    path = path_from_wire(params.path, params.path_bytes_b64, name="path")
    try:
        return await service.get_video(
            path, sync=params.sync, sync_timeout_s=params.sync_timeout_s
        )
    except NotFoundError:
        if not params.sync:
            raise
        # The service's message advises a sync, which was just done.
        raise NotFoundError(
            f"no catalog entry for {path!r} after a sync scan of it: it does not "
            "exist, has no video extension, or is ignored; check the path with ls"
        ) from None


async def _stats(service: Service, params: StatsParams) -> CatalogStats:
    under = optional_path_from_wire(params.under, params.under_bytes_b64, name="under")
    return await service.stats(under=under)


async def _config_get(service: Service, params: NoParams) -> dict[str, Any]:
    return await service.effective_config()


async def _metrics(service: Service, params: NoParams) -> str:
    return await service.metrics()


async def _per_connection(service: Service, params: Any) -> Any:
    raise AssertionError("subscribe and unsubscribe are run by the connection")


METHODS: Final[Mapping[str, _Method]] = {
    "ping": _Method(NoParams, _ping),
    "status": _Method(StatusParams, _status),
    "scan": _Method(ScanParams, _scan),
    "rescan": _Method(RescanParams, _rescan),
    "job.get": _Method(JobGetParams, _job_get),
    "job.cancel": _Method(JobCancelParams, _job_cancel),
    "jobs.list": _Method(JobsListParams, _jobs_list),
    "videos.list": _Method(VideosListParams, _videos_list),
    "video.get": _Method(VideoGetParams, _video_get),
    "stats": _Method(StatsParams, _stats),
    "config.get": _Method(NoParams, _config_get),
    "metrics": _Method(NoParams, _metrics),
    "subscribe": _Method(SubscribeParams, _per_connection),
    "unsubscribe": _Method(UnsubscribeParams, _per_connection),
}
"""Every method the server dispatches, by its JSON-RPC name."""

_CONNECTION_METHODS: Final = frozenset({"subscribe", "unsubscribe"})


class ControlServer:
    """Serves the control protocol for a :class:`Service` on a Unix socket.

    Args:
        service: what requests are dispatched to.
        options: a :class:`SocketOptions`, or the configuration's ``socket``
            section (see :meth:`SocketOptions.from_config`), or None for the
            defaults.
        socket_path: where to bind the socket. Required unless
            ``listen_socket`` is given; with both, the path is only reported.
        listen_socket: an already bound and listening socket to adopt, such as
            one passed in by systemd socket activation. The server then neither
            creates nor removes the socket file.

    Raises:
        ConfigError: an option is invalid or a configured group does not exist.
    """

    def __init__(
        self,
        service: Service,
        options: object | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        listen_socket: socket.socket | None = None,
    ) -> None:
        if socket_path is None and listen_socket is None:
            raise ValueError("ControlServer needs a socket_path or a listen_socket")
        self.service = service
        self.options = SocketOptions.from_config(options)
        self.socket_path = None if socket_path is None else Path(socket_path)
        self.policy = AccessPolicy(control_group=self.options.control_group)
        self._socket_gid = (
            None
            if self.options.group is None
            else _lookup_gid(self.options.group, "socket.group")
        )
        self._listen_socket = listen_socket
        self._open: set[_Connection] = set()
        self._next_connection_id = 1
        self.accepted_connections = 0
        self.rejected_connections = 0

    @property
    def active_connections(self) -> int:
        """The number of open connections, which count against the limit."""
        return len(self._open)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve connections until cancelled.

        ``task_status.started()`` is called once the socket accepts
        connections, so ``await task_group.start(server.serve)`` returns when
        clients can connect. A socket file this server created is removed when
        it stops.

        Raises:
            ControlSocketError: the socket cannot be created, for example
                because another daemon listens on the path.
        """
        if self._listen_socket is not None:
            sock, owned_inode = self._listen_socket, None
        else:
            assert self.socket_path is not None
            sock = await anyio.to_thread.run_sync(
                _bind_unix_socket,
                self.socket_path,
                self.options.mode,
                self._socket_gid,
                self.options.backlog,
            )
            owned_inode = os.stat(self.socket_path).st_ino

        try:
            listener = await anyio.abc.SocketListener.from_socket(sock)
            async with listener, anyio.create_task_group() as task_group:
                log.info(
                    "control_socket_listening",
                    path=str(self.socket_path),
                    socket_activated=owned_inode is None,
                    mode=f"{self.options.mode:04o}",
                )
                task_status.started()
                await self._accept_loop(listener, task_group)
        finally:
            if owned_inode is not None and self.socket_path is not None:
                _remove_socket_file(self.socket_path, owned_inode)
            log.info("control_socket_closed", path=str(self.socket_path))

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, task_group: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _TRANSIENT_ACCEPT_ERRNOS:
                    raise
                log.warning("accept_failed", error=str(exc), errno=exc.errno)
                await anyio.sleep(_ACCEPT_BACKOFF_S)
                continue

            if len(self._open) >= self.options.max_connections:
                self._release_hung_up()
            if len(self._open) >= self.options.max_connections:
                self.rejected_connections += 1
                await self._reject_connection(stream)
                continue
            self.accepted_connections += 1
            connection = _Connection(self, stream, self._next_connection_id)
            self._next_connection_id += 1
            self._open.add(connection)
            task_group.start_soon(self._serve_connection, stream, connection)

    async def _serve_connection(
        self, stream: anyio.abc.SocketStream, connection: _Connection
    ) -> None:
        try:
            async with stream:
                await connection.run()
        finally:
            self.release(connection)

    def release(self, connection: _Connection) -> None:
        """Stop counting ``connection`` against ``max_connections``."""
        self._open.discard(connection)

    def _release_hung_up(self) -> None:
        # Clients that closed may not have been read from yet when many
        # connect at once, so their slots are checked before refusing one.
        for connection in list(self._open):
            if connection.is_hung_up():
                connection.abandon()

    async def _reject_connection(self, stream: anyio.abc.SocketStream) -> None:
        limit = self.options.max_connections
        log.warning("connection_rejected", reason="too_many_connections", limit=limit)
        error = make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"too many connections (limit {limit}); close idle connections "
            "or try again later",
            "too_many_connections",
            limit=limit,
        )
        # A fresh socket's send buffer is empty, so this short line normally
        # goes out at once; the timeout only guards against a broken peer.
        with anyio.move_on_after(_REJECTION_SEND_TIMEOUT_S):
            try:
                await stream.send(encode_message(ErrorResponse(id=None, error=error)))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
        await anyio.aclose_forcefully(stream)


class _Connection:
    """One client connection: reads lines, runs requests, writes responses."""

    def __init__(
        self, server: ControlServer, stream: anyio.abc.SocketStream, connection_id: int
    ) -> None:
        self._server = server
        self._options = server.options
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._send_lock = anyio.Lock()
        self._scope = anyio.CancelScope()
        self._in_flight = 0
        # Requests rejected for the in-flight limit; only the first is logged
        # at once, so one client cannot flood the log.
        self._busy_rejections = 0
        self._at_eof = False
        self._may_control: bool | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._subscription: Subscription | None = None
        self._pump_scope: anyio.CancelScope | None = None
        # Set once a subscribe response is sent, so it precedes the first
        # notification.
        self._pump_gate = anyio.Event()
        self._send_interrupted = False
        self._peer = _read_peer(stream)
        self._log = log.bind(
            connection=connection_id,
            peer_pid=None if self._peer is None else self._peer.pid,
            peer_uid=None if self._peer is None else self._peer.uid,
        )

    def is_hung_up(self) -> bool:
        """Tell whether the peer closed both directions, not just its sending side."""
        sock = self._stream.extra(anyio.abc.SocketAttribute.raw_socket)
        if sock.fileno() < 0:
            return True
        poller = select.poll()
        poller.register(sock, select.POLLHUP)
        return any(events & select.POLLHUP for _, events in poller.poll(0))

    def abandon(self) -> None:
        """End a connection whose peer is gone, with the requests it still runs.

        The peer can no longer read the responses, and the slot is released at once
        rather than when the requests would have finished.
        """
        self._log.debug("connection_hung_up", in_flight=self._in_flight)
        self._server.release(self)
        self._scope.cancel()

    async def run(self) -> None:
        self._log.debug("connection_opened")
        try:
            with self._scope:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    async with anyio.create_task_group() as requests:
                        while (line := await self._read_line()) is not None:
                            await self._submit(line, requests)
                    # Every request has been answered. Once the client has
                    # closed its sending side, a subscription sends what is
                    # queued and ends, so `printf ... | socat` sees the
                    # notifications its own requests caused.
                    if self._subscription is not None:
                        self._server.service.unsubscribe(self._subscription)
                        self._subscription.finish()
        finally:
            self._close_subscription()
            if self._busy_rejections > 1:
                self._log.warning(
                    "requests_rejected",
                    reason="too_many_requests",
                    count=self._busy_rejections,
                )
        self._log.debug("connection_closed")

    async def _read_line(self) -> bytes | None:
        """Return the next request line, or None when the connection should end."""
        line = await self._read_raw_line()
        # receive_until() checks its limit only while no newline is buffered,
        # so a longer line that arrived in one read is returned whole.
        if line is not None and len(line) > self._options.max_line_bytes:
            await self._reject_line_too_long()
            return None
        return line

    async def _read_raw_line(self) -> bytes | None:
        # One byte more than the limit leaves room for the newline, so a line
        # of exactly max_line_bytes that arrives in pieces is accepted.
        max_bytes = self._options.max_line_bytes + 1
        while not self._at_eof:
            with anyio.move_on_after(self._options.idle_timeout_s):
                try:
                    return await self._reader.receive_until(b"\n", max_bytes)
                except anyio.IncompleteRead:
                    # The peer closed its sending side; a last line without a
                    # newline still counts, so `printf '{...}' | socat` works.
                    # A peer that closed both sides cannot read a response.
                    self._at_eof = True
                    if self.is_hung_up():
                        self.abandon()
                        return None
                    rest = self._reader.buffer
                    return rest if rest.strip() else None
                except anyio.DelimiterNotFound:
                    await self._reject_line_too_long()
                    return None
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return None

            # The idle timeout passed. A request still running keeps the
            # connection open, since its response is what the client waits
            # for, and so does a subscription, which is all it waits for.
            # NOTE: on asyncio, anyio 4.16's Unix socket stream logs
            # InvalidStateError when this cancellation meets arriving data in
            # the same loop step; the data stays buffered and is read next.
            if self._in_flight == 0 and self._subscription is None:
                self._log.debug("connection_idle_timeout")
                return None

        return None

    async def _submit(self, line: bytes, task_group: anyio.abc.TaskGroup) -> None:
        parsed = parse_line(line, max_batch_requests=self._options.max_batch_requests)
        if not parsed.entries:
            return
        if self._in_flight >= self._options.max_requests_in_flight:
            await self._reject_busy(parsed)
            return

        self._in_flight += 1
        task_group.start_soon(self._process, parsed)

    async def _process(self, parsed: ParsedLine) -> None:
        try:
            responses: list[Response] = []
            for entry in parsed.entries:
                response = await self._dispatch(entry)
                if response is not None:
                    responses.append(response)

            if responses:
                await self._send(responses if parsed.is_batch else responses[0])
        finally:
            self._in_flight -= 1
            if self._subscription is not None:
                self._pump_gate.set()

    async def _dispatch(self, entry: Request | InvalidEntry) -> Response | None:
        if isinstance(entry, InvalidEntry):
            self._log.debug("request_invalid", reason=entry.error.reason)
            return entry.to_response()

        started = time.perf_counter()
        error: ErrorObject | None = None
        result: Any = None
        try:
            result = await self._call(entry)
        except (_RequestFailed, MalformedParamsError) as exc:
            error = exc.error
        except ParamsError as exc:
            error = make_error(
                ErrorCode.INVALID_PARAMS,
                str(exc),
                "invalid_params",
                method=entry.method,
            )
        except DaemonError as exc:
            error = error_from_exception(exc)
        except Exception as exc:
            # A bug in one handler must not end the connection or the server:
            # the client gets -32603 and the log keeps the traceback.
            self._log.error("request_crashed", method=entry.method, exc_info=exc)
            error = make_error(
                ErrorCode.INTERNAL_ERROR,
                f"internal error while handling '{entry.method}' "
                f"({type(exc).__name__}); see the daemon log",
                "internal_error",
            )

        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        self._log.debug(
            "request_handled",
            method=entry.method,
            id=None if entry.is_notification else entry.id,
            error_code=None if error is None else error.code,
            elapsed_ms=elapsed_ms,
        )
        if entry.is_notification:
            return None
        request_id = _response_id(entry)
        if error is not None:
            return ErrorResponse(id=request_id, error=error)

        return SuccessResponse(id=request_id, result=result)

    async def _call(self, request: Request) -> Any:
        method = METHODS.get(request.method)
        if method is None:
            known = ", ".join(sorted(METHODS))
            raise _RequestFailed(
                make_error(
                    ErrorCode.METHOD_NOT_FOUND,
                    f"method not found: '{request.method}'; known methods: {known}",
                    "method_not_found",
                    method=request.method,
                )
            )
        if request.method in PRIVILEGED_METHODS and not await self._may_call_control():
            raise self._server.policy.denial(request.method, self._peer)

        params = decode_params(request.method, request.params, method.params_type)
        if isinstance(params, SubscribeParams):
            return self._subscribe(params.topics)
        if isinstance(params, UnsubscribeParams):
            return self._unsubscribe(params.topics)
        return await method.call(self._server.service, params)

    def _subscribe(self, topics: Sequence[str]) -> SubscribeResult:
        limit = self._options.max_subscription_backlog
        if self._subscription is None:
            self._subscription = self._server.service.subscribe(
                topics, max_backlog=limit, on_drop=self._on_subscription_dropped
            )
            assert self._task_group is not None
            self._pump_gate = anyio.Event()
            self._task_group.start_soon(self._pump, self._subscription)
            self._log.info("subscribed", topics=sorted(topics))
        else:
            self._subscription.topics.update(topics)
        return SubscribeResult(
            topics=sorted(self._subscription.topics), max_backlog=limit
        )

    def _unsubscribe(self, topics: Sequence[str] | None) -> SubscribeResult:
        limit = self._options.max_subscription_backlog
        if self._subscription is None:
            return SubscribeResult(topics=[], max_backlog=limit)
        if topics is not None:
            self._subscription.topics.difference_update(topics)
        if topics is None or not self._subscription.topics:
            self._close_subscription()
            return SubscribeResult(topics=[], max_backlog=limit)
        return SubscribeResult(
            topics=sorted(self._subscription.topics), max_backlog=limit
        )

    def _close_subscription(self) -> None:
        if self._subscription is not None:
            self._server.service.unsubscribe(self._subscription)
            self._subscription = None
        if self._pump_scope is not None:
            self._pump_scope.cancel()

    def _on_subscription_dropped(self) -> None:
        # Runs inside the publisher's call; the pump may be stuck sending to a
        # client that does not read, so it is cancelled rather than awaited.
        if self._pump_scope is not None:
            self._pump_scope.cancel()

    async def _pump(self, subscription: Subscription) -> None:
        """Send queued notifications until the subscription closes or drops."""
        with anyio.CancelScope() as self._pump_scope:
            await self._pump_gate.wait()
            try:
                while lines := await subscription.next_lines():
                    await self._send_bytes(b"".join(lines))
            except SubscriptionDropped:
                pass
        self._pump_scope = None
        if subscription.dropped is not None:
            await self._send_drop_notice(subscription.dropped)

    async def _send_drop_notice(self, dropped: SubscriptionDropped) -> None:
        self._log.warning("subscriber_dropped", reason="backlog_full")
        notice = encode_notification(
            "subscription.dropped",
            {"reason": "backlog_full", "message": str(dropped), "limit": dropped.limit},
        )
        if self._send_interrupted:
            # The cancelled send may have left half a line; end it first.
            notice = b"\n" + notice
        with (
            anyio.move_on_after(_DROP_NOTICE_TIMEOUT_S),
            contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError),
        ):
            async with self._send_lock:
                await self._stream.send(notice)
        self._subscription = None
        self._scope.cancel()

    async def _may_call_control(self) -> bool:
        if self._may_control is None:
            self._may_control = await anyio.to_thread.run_sync(
                self._server.policy.is_allowed, self._peer
            )
        return self._may_control

    async def _reject_busy(self, parsed: ParsedLine) -> None:
        limit = self._options.max_requests_in_flight
        self._busy_rejections += 1
        if self._busy_rejections == 1:
            self._log.warning(
                "request_rejected",
                reason="too_many_requests",
                limit=limit,
                note="further rejections are counted until the connection closes",
            )
        error = make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"too many requests in flight on this connection (limit {limit}); "
            "wait for responses before sending more",
            "too_many_requests",
            limit=limit,
        )
        responses: list[Response] = []
        for entry in parsed.entries:
            if isinstance(entry, InvalidEntry):
                responses.append(entry.to_response())
            elif not entry.is_notification:
                responses.append(ErrorResponse(id=_response_id(entry), error=error))

        if responses:
            await self._send(responses if parsed.is_batch else responses[0])

    async def _reject_line_too_long(self) -> None:
        limit = self._options.max_line_bytes
        self._log.warning("request_rejected", reason="line_too_long", limit=limit)
        error = make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"request line longer than {limit} bytes; closing the connection",
            "line_too_long",
            limit=limit,
        )
        await self._send(ErrorResponse(id=None, error=error))

    async def _send(self, message: Response | list[Response]) -> None:
        await self._send_bytes(encode_message(message))

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            with anyio.move_on_after(self._options.send_timeout_s) as timeout:
                try:
                    self._send_interrupted = True
                    await self._stream.send(data)
                    self._send_interrupted = False
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._log.debug("connection_lost_on_send")
                    self._scope.cancel()
                    return

        if timeout.cancelled_caught:
            # The client stopped reading; dropping it bounds the memory its
            # unread responses would take.
            self._log.warning("send_timed_out", timeout_s=self._options.send_timeout_s)
            self._scope.cancel()


class _RequestFailed(Exception):
    """Carries a ready-made error object out of request dispatch."""

    def __init__(self, error: ErrorObject) -> None:
        super().__init__(error.message)
        self.error = error


def _response_id(request: Request) -> RequestId:
    return None if isinstance(request.id, msgspec.UnsetType) else request.id


def _read_peer(stream: anyio.abc.SocketStream) -> PeerCredentials | None:
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    try:
        return PeerCredentials.from_socket(sock)
    except OSError as exc:
        # Without credentials the peer is treated as unprivileged, so only the
        # reading methods stay open to it.
        log.warning("peer_credentials_unavailable", error=str(exc))
        return None


def _parse_mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(
            f"config: socket.mode '{text}' is not an octal file mode; "
            'expected a string such as "0600" or "0660"'
        ) from None


def _lookup_gid(group: str, key: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"config: {key} '{group}' is not a group on this system; "
            "create it with groupadd or change the setting"
        ) from None


def _groups_of(uid: int, gid: int) -> list[int]:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        # A uid without a user database entry has no supplementary groups.
        return []
    return os.getgrouplist(name, gid)


def _bind_unix_socket(
    path: Path, mode: int, gid: int | None, backlog: int
) -> socket.socket:
    """Create, bind and start listening on a Unix socket at ``path``.

    Permissions are set between bind() and listen(): until listen() every
    connect() is refused, so no client can slip in under the wrong mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, mode)
        if gid is not None:
            os.chown(path, -1, gid)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ControlSocketError(
            f"cannot create control socket {path}: {exc.strerror or exc}; "
            "check the directory's permissions and that socket_path is shorter "
            "than 108 bytes"
        ) from exc

    return sock


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a daemon that is gone; raise for anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(
            f"cannot create control socket {path}: the path exists and is not a "
            "socket; remove it or set another socket_path"
        )

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except ConnectionRefusedError:
        log.info("stale_socket_removed", path=str(path))
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        # Any other failure (a timeout with a full backlog, EACCES) means the
        # file may still belong to a live server, so it is left alone.
        raise ControlSocketError(
            f"cannot create control socket {path}: it exists and probing it "
            f"failed ({exc}); remove it if no daemon is running"
        ) from exc
    finally:
        probe.close()

    raise ControlSocketError(
        f"cannot create control socket {path}: another process is listening on "
        "it; stop that daemon or set another socket_path"
    )


def _remove_socket_file(path: Path, inode: int) -> None:
    # Only the file this server bound is removed: a newer daemon may have
    # replaced it in the meantime.
    try:
        if os.stat(path).st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("socket_cleanup_failed", path=str(path), error=str(exc))
