"""Logging set-up: structlog events as JSON lines or console text, stdlib included."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import msgspec
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from .errors import ConfigError

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SecretRedactor",
    "configure_logging",
    "reset_logging",
]

#: Values accepted for the ``log_level`` setting, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: Values accepted for the ``log_format`` setting.
LOG_FORMATS = ("auto", "json", "console")

#: Key names whose values are never logged, matched case-insensitively anywhere
#: in the key, so ``api_token`` and ``DB_PASSWORD`` are caught too.
SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd|phrase)|secret|token|api_?key|authorization|credential"
    r"|cookie|private_?key|session_?key",
    re.IGNORECASE,
)

REDACTED = "[redacted]"

# The keys written first in every JSON line, so a reader scanning the journal
# finds them in the same place.
_LEADING_KEYS = ("timestamp", "level", "logger", "event")

# syslog priorities (sd-daemon(3)) that journald reads from a "<N>" line prefix.
_SYSLOG_PRIORITIES = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "error": 3,
    "critical": 2,
}

# The handler this module installed on the root logger, replaced on every call.
_handler: logging.Handler | None = None


class SecretRedactor:
    """A structlog processor that hides secrets and shortens long values.

    A value whose key looks like a secret (see :data:`SECRET_KEY_PATTERN`) is
    replaced with ``"[redacted]"``, also inside nested mappings and sequences.
    A string longer than ``max_chars`` is cut to that length and marked with
    its original length, so a file read into a variable cannot flood the log.
    Bytes are never logged, only their length. The ``exception`` key, which
    holds a formatted traceback, may be ``max_exception_chars`` long.

    Args:
        max_chars: the longest string value kept whole.
        max_items: the most items of one list, tuple or set kept.
        max_exception_chars: the longest traceback kept whole.
    """

    def __init__(
        self,
        *,
        max_chars: int = 1000,
        max_items: int = 50,
        max_exception_chars: int = 10_000,
    ) -> None:
        self.max_chars = max_chars
        self.max_items = max_items
        self.max_exception_chars = max_exception_chars

    def __call__(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> EventDict:
        for key, value in event_dict.items():
            if key.startswith("_"):
                # structlog's own bookkeeping, such as "_record", is never rendered.
                continue
            if key == "exception" and isinstance(value, str):
                event_dict[key] = _truncate(value, self.max_exception_chars)
            else:
                event_dict[key] = self._clean(key, value, depth=0)

        return event_dict

    def _clean(self, key: object, value: object, *, depth: int) -> object:
        if isinstance(key, str) and SECRET_KEY_PATTERN.search(key):
            return REDACTED
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return _truncate(value, self.max_chars)
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if depth >= 4:
            return _truncate(repr(value), self.max_chars)
        if isinstance(value, Mapping):
            return {k: self._clean(k, v, depth=depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return self._clean_items(value, depth=depth)

        return _truncate(str(value), self.max_chars)

    def _clean_items(self, items: Any, *, depth: int) -> list[object]:
        cleaned = [
            self._clean(None, item, depth=depth + 1)
            for _, item in zip(range(self.max_items), items, strict=False)
        ]
        if len(items) > self.max_items:
            cleaned.append(f"...[{len(items) - self.max_items} more items]")

        return cleaned


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
) -> None:
    """Send structlog events and stdlib log records to one stream.

    With ``fmt="json"``, or ``"auto"`` when the stream is not a terminal, each
    event is one JSON object per line with ``timestamp`` (ISO 8601, UTC),
    ``level``, ``logger`` and ``event`` first. On a terminal, ``"auto"`` picks
    structlog's console renderer. When the stream is connected to journald
    (``$JOURNAL_STREAM`` matches it), each JSON line starts with a ``<N>``
    syslog priority, which journald removes and stores as ``PRIORITY=``, so
    ``journalctl -p warning`` works. Records from libraries that use the stdlib
    ``logging`` module, and Python warnings, go through the same processors.

    Calling it again replaces the previous set-up.

    Args:
        level: the lowest level logged, one of :data:`LOG_LEVELS`.
        fmt: one of :data:`LOG_FORMATS`.
        stream: where to write; defaults to ``sys.stdout``.

    Raises:
        ConfigError: ``level`` or ``fmt`` is not one of the accepted values.
    """
    global _handler

    level_name = level.lower()
    if level_name not in LOG_LEVELS:
        raise ConfigError(
            f"log_level {level!r} is invalid: expected one of {', '.join(LOG_LEVELS)}"
        )
    if fmt not in LOG_FORMATS:
        raise ConfigError(
            f"log_format {fmt!r} is invalid: expected one of {', '.join(LOG_FORMATS)}"
        )

    output = sys.stdout if stream is None else stream
    use_json = fmt == "json" or (fmt == "auto" and not _is_terminal(output))
    renderer: Processor
    if use_json:
        renderer = _JsonRenderer(syslog_prefix=_is_journal_stream(output))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(output))

    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                SecretRedactor(),
                renderer,
            ],
        )
    )

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(level_name.upper())
    _handler = handler
    logging.captureWarnings(True)

    # The structlog chain is the same on every call and everything that varies
    # lives in the handler, so loggers cached on first use stay correct.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove its handler, stop capturing
    warnings and restore structlog's defaults.
    """
    global _handler

    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = None
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _JsonRenderer:
    """Render an event dict as one compact JSON line."""

    def __init__(self, *, syslog_prefix: bool) -> None:
        self._syslog_prefix = syslog_prefix
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def __call__(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> str:
        ordered = {
            key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict
        }
        ordered.update(event_dict)
        line = self._encoder.encode(ordered).decode()
        if not self._syslog_prefix:
            return line

        priority = _SYSLOG_PRIORITIES.get(str(ordered.get("level", "")), 6)
        return f"<{priority}>{line}"


def _truncate(text: str, max_chars: int) -> str:
    # File names that are not valid UTF-8 arrive as surrogate escapes, which
    # no UTF-8 log line can carry; show their bytes as \x escapes instead.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode(
            "utf-8", "backslashreplace"
        )
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}...[truncated, {len(text)} chars]"


def _is_terminal(stream: TextIO) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _is_journal_stream(stream: TextIO) -> bool:
    # systemd.exec(5): $JOURNAL_STREAM is "device:inode" of the stream journald
    # connected to stdout/stderr. Comparing it with the stream itself avoids
    # prefixing lines that go to a file or pipe the service set up on its own.
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        # Streams without a descriptor (io.StringIO raises an OSError subclass)
        # cannot be journald's.
        return False

    return expected == f"{info.st_dev}:{info.st_ino}"
