"""The JSON-RPC 2.0 wire format of the control socket: messages, codes, parsing."""

from __future__ import annotations

import base64
import binascii
import enum
import os
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from .errors import (
    ConfigError,
    DaemonError,
    InvalidParamsError,
    NotFoundError,
    PathNotAllowedError,
    PermissionDeniedError,
    StorageError,
)
from .models import Job, JobState, Video

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SYNC_TIMEOUT_S",
    "MAX_ID",
    "MAX_PAGE_SIZE",
    "MAX_SYNC_TIMEOUT_S",
    "CatalogStats",
    "ErrorCode",
    "ErrorObject",
    "ErrorResponse",
    "InvalidEntry",
    "JobCancelParams",
    "JobGetParams",
    "JobsListParams",
    "JobsListResult",
    "MalformedParamsError",
    "NoParams",
    "ParamsError",
    "ParsedLine",
    "Request",
    "RemovedVideo",
    "RequestId",
    "RescanParams",
    "RescanResult",
    "Response",
    "ScanParams",
    "ScanResult",
    "StatsParams",
    "StatusParams",
    "SubscribeParams",
    "SubscribeResult",
    "SuccessResponse",
    "UnsubscribeParams",
    "VideoGetParams",
    "VideosListParams",
    "VideosListResult",
    "decode_params",
    "encode_json",
    "encode_message",
    "encode_notification",
    "error_from_exception",
    "make_error",
    "parse_line",
    "optional_path_from_wire",
    "path_from_wire",
    "to_wire",
]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
DEFAULT_SYNC_TIMEOUT_S: Final = 60.0
MAX_SYNC_TIMEOUT_S: Final = 3600.0
# Job ids are SQLite INTEGER PRIMARY KEYs, which are signed 64-bit; a larger
# number cannot name a job and would overflow the database binding.
MAX_ID: Final = 2**63 - 1


class ErrorCode(enum.IntEnum):
    """Error codes sent in ``error.code``.

    The first five are reserved by JSON-RPC 2.0; the others are reelwatch's own.
    """

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    PATH_NOT_ALLOWED = -32001
    NOT_FOUND = -32002
    PERMISSION_DENIED = -32003
    LIMIT_EXCEEDED = -32004
    TIMEOUT = -32005
    STORAGE_ERROR = -32010


RequestId = int | str | None
"""A request id as JSON-RPC allows it; fractional numbers are rejected."""


# ---------------------------------------------------------------------------
# Envelopes


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One JSON-RPC request or notification as read from a client.

    Unknown members of the envelope are ignored, so clients that add their own
    bookkeeping keys still work. ``params`` stays undecoded until the method is
    known; an empty ``Raw`` means the member was absent. ``id`` is ``UNSET`` for
    a notification.
    """

    jsonrpc: Literal["2.0"]
    method: str
    params: msgspec.Raw = msgspec.Raw()
    id: RequestId | UnsetType = UNSET

    @property
    def is_notification(self) -> bool:
        return self.id is UNSET


class ErrorObject(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The ``error`` member of a response.

    ``data.reason`` is a stable snake_case tag that scripts can match on.
    """

    code: int
    message: str
    data: dict[str, Any] | None = None

    @property
    def reason(self) -> str | None:
        if self.data is None:
            return None
        reason = self.data.get("reason")
        return reason if isinstance(reason, str) else None


class SuccessResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A response carrying a result."""

    jsonrpc: Literal["2.0"] = "2.0"
    id: RequestId
    result: Any


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A response carrying an error; ``id`` is null when the request's id is unknown."""

    jsonrpc: Literal["2.0"] = "2.0"
    id: RequestId
    error: ErrorObject


Response = SuccessResponse | ErrorResponse


class InvalidEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A line or batch element that is not a valid request, with its error."""

    id: RequestId
    error: ErrorObject

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(id=self.id, error=self.error)


class ParsedLine(msgspec.Struct, frozen=True, kw_only=True):
    """The entries of one request line.

    ``is_batch`` is true when the line was a JSON array, in which case the
    responses must also be sent as one array.
    """

    entries: list[Request | InvalidEntry]
    is_batch: bool = False


# ---------------------------------------------------------------------------
# Method parameters and results

PageSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE_SIZE)]
PositiveId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class NoParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of methods that take none (``ping``, ``config.get``, ``metrics``)."""


SyncTimeout = Annotated[float, msgspec.Meta(gt=0, le=MAX_SYNC_TIMEOUT_S)]
Topic = Literal[
    "job.updated", "video.added", "video.updated", "video.removed", "root.state"
]


class StatusParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``status``; ``sync`` first waits for pending changes."""

    sync: bool = False
    sync_timeout_s: SyncTimeout = DEFAULT_SYNC_TIMEOUT_S


class ScanParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters of ``scan``: an absolute path inside an allowed root.

    ``path_bytes_b64`` replaces ``path`` for a name that is not valid UTF-8.
    """

    path: NonEmptyStr | None = None
    path_bytes_b64: NonEmptyStr | None = None
    recursive: bool = True


class JobGetParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``job.get``."""

    job_id: PositiveId


class JobCancelParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``job.cancel``."""

    job_id: PositiveId


class JobsListParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``jobs.list``; without ``status`` every state is listed."""

    status: JobState | None = None
    limit: PageSize = DEFAULT_PAGE_SIZE


class VideosListParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``videos.list``.

    ``cursor`` is a previous ``next_cursor`` (paging through a full listing);
    ``since`` is a previous ``cursor`` (only what changed after it).
    """

    under: NonEmptyStr | None = None
    limit: PageSize = DEFAULT_PAGE_SIZE
    cursor: NonEmptyStr | None = None
    since: NonEmptyStr | None = None
    under_bytes_b64: NonEmptyStr | None = None
    sync: bool = False
    sync_timeout_s: SyncTimeout = DEFAULT_SYNC_TIMEOUT_S


class VideoGetParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``video.get``: ``path``, or ``path_bytes_b64`` for a
    name that is not valid UTF-8."""

    path: NonEmptyStr | None = None
    path_bytes_b64: NonEmptyStr | None = None
    sync: bool = False
    sync_timeout_s: SyncTimeout = DEFAULT_SYNC_TIMEOUT_S


class StatsParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``stats``; without ``under`` the whole catalog counts."""

    under: NonEmptyStr | None = None
    under_bytes_b64: NonEmptyStr | None = None


class RescanParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``rescan``; without ``root`` every root is rescanned."""

    root: NonEmptyStr | None = None
    root_bytes_b64: NonEmptyStr | None = None


class SubscribeParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``subscribe``: the notification topics to receive."""

    topics: Annotated[list[Topic], msgspec.Meta(min_length=1)]


class UnsubscribeParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Parameters of ``unsubscribe``; without ``topics`` every topic stops."""

    topics: list[Topic] | None = None


class ScanResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``scan``: the queued job's id, state and path."""

    job_id: int
    status: JobState
    path: str


class RescanResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``rescan``: one queued job per root."""

    jobs: list[ScanResult]


class JobsListResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``jobs.list``, newest job first."""

    jobs: list[Job]


class RemovedVideo(msgspec.Struct, frozen=True, kw_only=True):
    """A catalog entry that went away: its former id and path."""

    id: int | None
    path: str


class VideosListResult(msgspec.Struct, kw_only=True):
    """The result of ``videos.list``.

    Without ``since``: a page of the catalog in path order, ``next_cursor``
    for the next page, and ``cursor``, the change position taken before the
    page was read. With ``since``: the entries changed after that position
    (current records in ``videos``, entries that went in ``removed``), a new
    ``cursor``, and ``more`` when the limit cut the list short.
    ``fresh_instance`` means the ``since`` cursor is from an earlier daemon
    instance or older than the journal keeps: list everything again.
    """

    videos: list[Video]
    next_cursor: str | None = None
    cursor: str = ""
    removed: list[RemovedVideo] = msgspec.field(default_factory=list)
    more: bool = False
    fresh_instance: bool = False


class SubscribeResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``subscribe`` and ``unsubscribe``: the topics now active."""

    topics: list[str]
    max_backlog: int


class CatalogStats(msgspec.Struct, kw_only=True):
    """The result of ``stats``: catalog totals.

    The ``by_*`` counts cover entries probed without error, most common
    first; ``errors`` counts the entries with an error and ``offline`` the
    ones whose root is missing.
    """

    videos: int = 0
    total_size: int = 0
    total_duration_s: float = 0.0
    errors: int = 0
    offline: int = 0
    by_container: dict[str, int] = msgspec.field(default_factory=dict)
    by_video_codec: dict[str, int] = msgspec.field(default_factory=dict)
    by_audio_codec: dict[str, int] = msgspec.field(default_factory=dict)
    by_resolution: dict[str, int] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------------------
# Decoding

_request_decoder = msgspec.json.Decoder(Request)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_positional_decoder = msgspec.json.Decoder(list[Any])
_any_decoder = msgspec.json.Decoder()


class _IdProbe(msgspec.Struct):
    id: RequestId | UnsetType = UNSET


_id_probe_decoder = msgspec.json.Decoder(_IdProbe)
_encoder = msgspec.json.Encoder()

_REQUEST_SHAPE = (
    'a request is {"jsonrpc": "2.0", "method": string, '
    '"params": object or array (optional), "id": integer, string or null '
    "(absent for a notification)}"
)

P = TypeVar("P", bound=msgspec.Struct)


class ParamsError(Exception):
    """Raised by :func:`decode_params` when params do not fit the method."""


class MalformedParamsError(ParamsError):
    """Raised by :func:`decode_params` when params are not valid JSON in UTF-8.

    The envelope decoder keeps ``params`` as raw bytes, so a string in them
    is only checked once the method's params are decoded. ``error`` is the
    -32700 error to send.
    """

    def __init__(self, error: ErrorObject) -> None:
        super().__init__(error.message)
        self.error = error


def make_error(
    code: ErrorCode | int, message: str, reason: str, **data: Any
) -> ErrorObject:
    """Build an error object whose ``data`` carries ``reason`` and any extra keys."""
    return ErrorObject(code=int(code), message=message, data={"reason": reason, **data})


def parse_line(line: bytes, *, max_batch_requests: int) -> ParsedLine:
    """Parse one request line into requests and ready-made errors.

    A blank line yields no entries. Malformed JSON, invalid UTF-8 and nesting
    deeper than the decoder allows yield one parse error; an element that is
    valid JSON but not a request yields an invalid-request entry, keeping its
    id when one can be read.
    """
    stripped = line.strip()
    if not stripped:
        return ParsedLine(entries=[])
    if stripped[:1] != b"[":
        return ParsedLine(entries=[_parse_entry(stripped)])

    try:
        elements = _batch_decoder.decode(stripped)
    except RecursionError:
        return ParsedLine(entries=[_nesting_error()])
    except msgspec.DecodeError as exc:
        return ParsedLine(entries=[_parse_error(exc)])

    if not elements:
        error = make_error(
            ErrorCode.INVALID_REQUEST,
            "invalid request: empty batch; send at least one request in the array",
            "empty_batch",
        )
        return ParsedLine(entries=[InvalidEntry(id=None, error=error)])
    if len(elements) > max_batch_requests:
        error = make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"batch of {len(elements)} requests exceeds the limit of "
            f"{max_batch_requests}; split it into smaller batches",
            "batch_too_large",
            limit=max_batch_requests,
        )
        return ParsedLine(entries=[InvalidEntry(id=None, error=error)])

    return ParsedLine(entries=[_parse_entry(bytes(e)) for e in elements], is_batch=True)


def decode_params(method: str, raw: msgspec.Raw, params_type: type[P]) -> P:
    """Decode a request's ``params`` into the method's parameter struct.

    An absent or null ``params`` counts as an empty object. An array is taken
    as positional parameters in the order of the struct's fields.

    Raises:
        ParamsError: the params are missing a field, have an unknown one, or a
            value of the wrong type or range; the message names the field.
        MalformedParamsError: the params are not valid UTF-8 or are nested
            too deeply.
    """
    data = bytes(raw).strip()
    if not data or data == b"null":
        data = b"{}"
    try:
        if data[:1] == b"[":
            return _decode_positional(method, data, params_type)
        decoder: msgspec.json.Decoder[P] = _params_decoder(params_type)
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        detail = str(exc).replace("`$", "`params")
        raise ParamsError(f"invalid params for '{method}': {detail}") from None
    except RecursionError:
        raise MalformedParamsError(_nesting_error().error) from None
    except msgspec.DecodeError as exc:
        raise MalformedParamsError(_parse_error(exc).error) from None


def error_from_exception(exc: DaemonError) -> ErrorObject:
    """Translate a daemon exception into the error object a client receives.

    ``data.reason`` comes from the exception class unless the exception sets a
    ``reason`` attribute; a ``data`` mapping on the exception is merged in.
    """
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str):
        reason = _reason_for(exc)
    extra = getattr(exc, "data", None)
    data: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
    data["reason"] = reason
    message = str(exc) or type(exc).__name__

    return ErrorObject(code=exc.code, message=message, data=data)


def encode_message(message: Response | Sequence[Response]) -> bytes:
    """Encode a response, or a batch of them, as one line ending in ``\\n``.

    Strings that are not valid UTF-8 (file names decoded with surrogate
    escapes) are sent as described in :func:`_to_wire`.
    """
    try:
        return _encoder.encode(message) + b"\n"
    except UnicodeEncodeError:
        return _encoder.encode(to_wire(msgspec.to_builtins(message))) + b"\n"


def encode_json(value: Any) -> bytes:
    """Encode any value as compact JSON, with the wire form of non-UTF-8 names."""
    try:
        return _encoder.encode(value)
    except UnicodeEncodeError:
        return _encoder.encode(to_wire(msgspec.to_builtins(value)))


def encode_notification(method: str, params: Any) -> bytes:
    """Encode a server notification (a request without ``id``) as one line."""
    message = {"jsonrpc": "2.0", "method": method, "params": params}
    try:
        return _encoder.encode(message) + b"\n"
    except UnicodeEncodeError:
        return _encoder.encode(to_wire(msgspec.to_builtins(message))) + b"\n"


def path_from_wire(text: str | None, bytes_b64: str | None, *, name: str) -> str:
    """Return the path a request names, from ``name`` or ``name_bytes_b64``.

    Raises:
        InvalidParamsError: both or neither are given, or the base64 is
            invalid.
    """
    path = optional_path_from_wire(text, bytes_b64, name=name)
    if path is None:
        raise InvalidParamsError(
            f"invalid params: `params.{name}` is missing; pass {name}, or "
            f"{name}_bytes_b64 (the path's bytes in base64) for a path that is "
            "not valid UTF-8"
        )
    return path


def optional_path_from_wire(
    text: str | None, bytes_b64: str | None, *, name: str
) -> str | None:
    """Return the path from ``name`` or ``name_bytes_b64``, or None without either.

    Raises:
        InvalidParamsError: both are given, or the base64 is invalid.
    """
    if text is not None and bytes_b64 is not None:
        raise InvalidParamsError(
            f"invalid params: pass either {name} or {name}_bytes_b64, not both"
        )
    if bytes_b64 is None:
        return text
    try:
        raw = base64.b64decode(bytes_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParamsError(
            f"{name}_bytes_b64 {bytes_b64!r} is not valid base64"
        ) from None
    if not raw or b"\0" in raw:
        raise InvalidParamsError(
            f"{name}_bytes_b64 decodes to an empty path or one with a NUL byte"
        )
    return os.fsdecode(raw)


def to_wire(value: Any) -> Any:
    """Replace strings that are not valid UTF-8 so that JSON can carry them.

    Such a string becomes its UTF-8 decoding with U+FFFD for each invalid
    byte. When it is the value of an object member ``key``, the member
    ``key_bytes_b64`` is added with the original bytes in base64, so a client
    can recover the exact file name.
    """
    if isinstance(value, str):
        return _replace_invalid(value) if _has_surrogates(value) else value
    if isinstance(value, list):
        return [to_wire(item) for item in value]
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            wire_key = to_wire(key)
            if isinstance(item, str) and _has_surrogates(item):
                result[wire_key] = _replace_invalid(item)
                encoded = base64.b64encode(_raw_bytes(item)).decode("ascii")
                result[f"{wire_key}_bytes_b64"] = encoded
            else:
                result[wire_key] = to_wire(item)
        return result
    return value


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _raw_bytes(text: str) -> bytes:
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        # A surrogate that no file name decoding produces (outside
        # U+DC80..U+DCFF) keeps its UTF-8-like encoding.
        return text.encode("utf-8", "surrogatepass")


def _replace_invalid(text: str) -> str:
    return _raw_bytes(text).decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Private helpers

_params_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _params_decoder(params_type: type[P]) -> msgspec.json.Decoder[P]:
    decoder = _params_decoders.get(params_type)
    if decoder is None:
        decoder = _params_decoders[params_type] = msgspec.json.Decoder(params_type)
    return decoder


def _decode_positional(method: str, data: bytes, params_type: type[P]) -> P:
    values = _positional_decoder.decode(data)
    names = msgspec.structs.fields(params_type)
    if len(values) > len(names):
        expected = ", ".join(f.name for f in names) or "no params"
        raise ParamsError(
            f"invalid params for '{method}': got {len(values)} positional params, "
            f"expected at most {len(names)} ({expected})"
        )
    as_object = {field.name: value for field, value in zip(names, values, strict=False)}

    return msgspec.convert(as_object, params_type)


def _parse_entry(data: bytes) -> Request | InvalidEntry:
    try:
        request = _request_decoder.decode(data)
    except msgspec.ValidationError as exc:
        # msgspec stops at the first type mismatch, before it has seen the
        # rest of the input, so malformed JSON must be ruled out first.
        malformed = _check_well_formed(data)
        if malformed is not None:
            return malformed
        detail = str(exc).replace("`$", "`request")
        error = make_error(
            ErrorCode.INVALID_REQUEST,
            f"invalid request: {detail}; {_REQUEST_SHAPE}",
            "invalid_request",
        )
        return InvalidEntry(id=_probe_id(data), error=error)
    except RecursionError:
        return _nesting_error()
    except msgspec.DecodeError as exc:
        return _parse_error(exc)

    params = bytes(request.params).lstrip()[:1]
    if params not in (b"", b"{", b"[", b"n"):
        error = make_error(
            ErrorCode.INVALID_REQUEST,
            "invalid request: `params` must be an object or an array; "
            + _REQUEST_SHAPE,
            "invalid_request",
        )
        return InvalidEntry(id=_response_id(request), error=error)
    return request


def _response_id(request: Request) -> RequestId:
    return None if isinstance(request.id, UnsetType) else request.id


def _check_well_formed(data: bytes) -> InvalidEntry | None:
    try:
        _any_decoder.decode(data)
    except RecursionError:
        return _nesting_error()
    except msgspec.DecodeError as exc:
        return _parse_error(exc)
    return None


def _probe_id(data: bytes) -> RequestId:
    try:
        probe = _id_probe_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    return None if isinstance(probe.id, UnsetType) else probe.id


def _parse_error(exc: msgspec.DecodeError) -> InvalidEntry:
    detail = str(exc)
    reason = "invalid_utf8" if "UTF-8" in detail else "parse_error"
    error = make_error(
        ErrorCode.PARSE_ERROR,
        f"parse error: {detail}; send one JSON object or array per line in UTF-8",
        reason,
    )
    return InvalidEntry(id=None, error=error)


def _nesting_error() -> InvalidEntry:
    error = make_error(
        ErrorCode.PARSE_ERROR,
        "parse error: JSON is nested too deeply to decode",
        "nesting_too_deep",
    )
    return InvalidEntry(id=None, error=error)


_REASONS: Final[list[tuple[type[DaemonError], str]]] = [
    (PathNotAllowedError, "path_not_allowed"),
    (NotFoundError, "not_found"),
    (PermissionDeniedError, "permission_denied"),
    (InvalidParamsError, "invalid_params"),
    (StorageError, "storage_error"),
    (ConfigError, "config_error"),
]


def _reason_for(exc: DaemonError) -> str:
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return reason
    return "internal_error"
