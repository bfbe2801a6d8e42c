"""Readiness, watchdog and socket activation through systemd, without libsystemd.

The protocols are small enough to speak directly: ``sd_notify`` is one datagram
of ``KEY=value`` lines sent to ``$NOTIFY_SOCKET`` (see sd_notify(3)), and socket
activation passes already-bound sockets as file descriptors 3, 4, ... described
by ``$LISTEN_FDS``, ``$LISTEN_PID`` and ``$LISTEN_FDNAMES`` (see
sd_listen_fds(3)). Outside systemd both features stay silent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import NamedTuple

import anyio
import structlog

from .errors import DaemonError

__all__ = [
    "LISTEN_FDS_START",
    "ListenSocket",
    "Notifier",
    "SocketActivationError",
    "listen_fds",
    "run_watchdog",
]

log = structlog.get_logger(__name__)

#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

_LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class SocketActivationError(DaemonError):
    """Raised when ``LISTEN_FDS`` or ``LISTEN_FDNAMES`` is malformed, or when a
    passed file descriptor is not a socket.
    """


class ListenSocket(NamedTuple):
    """A listening socket passed in by systemd."""

    name: str
    """The ``FileDescriptorName=`` of the socket unit, ``"unknown"`` if unset."""

    socket: socket.socket


class Notifier:
    """Sends ``sd_notify`` messages to the service manager.

    When ``NOTIFY_SOCKET`` is unset (the daemon runs outside systemd, or under a
    unit with ``Type=simple``), every method returns without creating a socket
    or sending anything.

    A failed send is logged as ``systemd_notify_failed`` and otherwise ignored,
    because a notification that cannot be delivered must not stop the daemon.

    Args:
        environ: where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and
            ``WATCHDOG_PID``; defaults to ``os.environ``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether ``NOTIFY_SOCKET`` names a socket to send to."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments to systemd in one datagram.

        Returns:
            True if the datagram was sent, False if notifications are disabled
            or the send failed.
        """
        if self._address is None:
            return False

        message = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, self._address)
        except OSError as exc:
            log.warning(
                "systemd_notify_failed",
                socket=_printable_address(self._address),
                message=assignments[0] if assignments else "",
                error=str(exc),
            )
            return False

        return True

    def ready(self) -> bool:
        """Tell systemd that start-up, or a reload, has finished (``READY=1``)."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status`` (``STATUS=``)."""
        # A newline would start a new assignment, so fold the text onto one line.
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def reloading(self) -> bool:
        """Tell systemd that a configuration reload has started.

        Sends ``RELOADING=1`` and ``MONOTONIC_USEC`` in one datagram, as
        ``Type=notify-reload`` (systemd 253 and later) requires. Call
        :meth:`ready` when the reload is done, whether it succeeded or not.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> bool:
        """Tell systemd that the daemon is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Send one keep-alive ping (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask systemd to wait ``seconds`` longer for start-up, reload or stop.

        Useful before a long database migration (``EXTEND_TIMEOUT_USEC=``).
        """
        return self.notify(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def watchdog_interval(self) -> float | None:
        """Return the watchdog timeout in seconds, or None when it is off.

        The timeout comes from ``WATCHDOG_USEC`` (set by ``WatchdogSec=``). It
        applies only when ``WATCHDOG_PID`` is unset or equals this process's
        PID, because a child that inherited the variables must not ping on its
        parent's behalf.
        """
        if self._address is None or not self._watchdog_usec:
            return None

        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None

        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            usec = 0
        if usec <= 0:
            log.warning(
                "systemd_watchdog_usec_invalid",
                value=self._watchdog_usec,
                expected="a positive number of microseconds",
            )
            return None

        return usec / 1_000_000

    def close(self) -> None:
        """Close the datagram socket, if one was opened."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def run_watchdog(notifier: Notifier, *, timeout_s: float | None = None) -> None:
    """Send ``WATCHDOG=1`` at half the watchdog timeout until cancelled.

    Run it as a task in the daemon's main task group. The pings come from the
    event loop itself, so a loop that is blocked stops pinging and systemd
    restarts the service after ``WatchdogSec=``. Returns at once when the
    watchdog is off.

    Args:
        notifier: where to send the pings.
        timeout_s: the watchdog timeout; defaults to
            :meth:`Notifier.watchdog_interval`.
    """
    if timeout_s is None:
        timeout_s = notifier.watchdog_interval()
    if timeout_s is None:
        return

    log.debug("systemd_watchdog_started", timeout_s=timeout_s)
    while True:
        notifier.watchdog()
        await anyio.sleep(timeout_s / 2)


def listen_fds(
    environ: MutableMapping[str, str] | None = None,
    *,
    unset_environment: bool = True,
) -> list[ListenSocket]:
    """Take over the sockets that systemd passed through socket activation.

    The sockets are the descriptors from 3 up, ``LISTEN_FDS`` of them, meant for
    this process only if ``LISTEN_PID`` equals its PID. Each one is marked
    close-on-exec so that no child process inherits it. The caller owns the
    returned socket objects; it may close them but must not call
    ``shutdown()``, which would also stop systemd's copy from accepting.

    Args:
        environ: where to read the ``LISTEN_*`` variables; defaults to
            ``os.environ``.
        unset_environment: remove the ``LISTEN_*`` variables afterwards, so a
            child process cannot mistake them for its own.

    Returns:
        The passed sockets in order, or an empty list when there are none or
        they were meant for another process.

    Raises:
        SocketActivationError: ``LISTEN_FDS`` is not a non-negative integer,
            ``LISTEN_FDNAMES`` has the wrong number of names, or a passed
            descriptor is not a socket.
    """
    env = os.environ if environ is None else environ
    try:
        return _take_listen_sockets(env)
    finally:
        if unset_environment:
            for name in _LISTEN_VARIABLES:
                env.pop(name, None)


def _take_listen_sockets(env: Mapping[str, str]) -> list[ListenSocket]:
    pid = env.get("LISTEN_PID", "")
    count_text = env.get("LISTEN_FDS", "")
    if not pid or not count_text:
        return []

    if pid != str(os.getpid()):
        log.debug("systemd_listen_fds_for_other_process", listen_pid=pid)
        return []

    try:
        count = int(count_text)
    except ValueError:
        count = -1
    if count < 0:
        raise SocketActivationError(
            f"LISTEN_FDS={count_text!r} is invalid: expected the number of "
            "passed sockets; check the environment the daemon was started with"
        )

    names = env.get("LISTEN_FDNAMES", "")
    fd_names = names.split(":") if names else ["unknown"] * count
    if len(fd_names) != count:
        raise SocketActivationError(
            f"LISTEN_FDNAMES={names!r} has {len(fd_names)} names but "
            f"LISTEN_FDS={count}: expected one name per passed socket"
        )

    sockets = []
    for offset, name in enumerate(fd_names):
        fd = LISTEN_FDS_START + offset
        os.set_inheritable(fd, False)
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise SocketActivationError(
                f"file descriptor {fd} ({name!r}) passed by systemd is not a "
                f"socket ({exc.strerror}); the socket unit must use ListenStream="
            ) from exc
        sockets.append(ListenSocket(name, sock))

    log.info(
        "systemd_sockets_received",
        count=count,
        names=fd_names,
    )

    return sockets


def _notify_address(value: str) -> str | bytes | None:
    # sd_notify(3): an absolute path, or an abstract socket written with a
    # leading "@" that stands for the NUL byte.
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value:
        log.warning(
            "systemd_notify_socket_invalid",
            value=value,
            expected="an absolute path or an abstract name starting with @",
        )
    return None


def _printable_address(address: str | bytes) -> str:
    if isinstance(address, bytes):
        return "@" + address[1:].decode(errors="replace")
    return address
