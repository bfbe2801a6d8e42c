"""Unit tests of the wire format: line parsing, params decoding, error mapping."""

from __future__ import annotations

import msgspec
import pytest

from reelwatch.errors import (
    DaemonError,
    InvalidParamsError,
    NotFoundError,
    PathNotAllowedError,
    PermissionDeniedError,
    StorageError,
)
from reelwatch.models import JobState
from reelwatch.protocol import (
    ErrorCode,
    ErrorObject,
    ErrorResponse,
    InvalidEntry,
    JobGetParams,
    JobsListParams,
    NoParams,
    ParamsError,
    Request,
    ScanParams,
    SuccessResponse,
    VideosListParams,
    decode_params,
    encode_message,
    error_from_exception,
    parse_line,
)


def parse(line: bytes, max_batch_requests: int = 100) -> list[Request | InvalidEntry]:
    return parse_line(line, max_batch_requests=max_batch_requests).entries


class TestParseLine:
    def test_request_with_named_params(self) -> None:
        [entry] = parse(b'{"jsonrpc":"2.0","id":"x","method":"scan","params":{"a":1}}')

        assert isinstance(entry, Request)
        assert entry.method == "scan"
        assert entry.id == "x"
        assert bytes(entry.params) == b'{"a":1}'
        assert not entry.is_notification

    def test_missing_id_is_notification(self) -> None:
        [entry] = parse(b'{"jsonrpc":"2.0","method":"ping"}')

        assert isinstance(entry, Request)
        assert entry.is_notification

    def test_null_id_is_request(self) -> None:
        [entry] = parse(b'{"jsonrpc":"2.0","method":"ping","id":null}')

        assert isinstance(entry, Request)
        assert entry.id is None
        assert not entry.is_notification

    def test_unknown_envelope_members_ignored(self) -> None:
        [entry] = parse(b'{"jsonrpc":"2.0","method":"ping","id":1,"trace":"abc"}')

        assert isinstance(entry, Request)

    @pytest.mark.parametrize("line", [b"", b"   ", b"\r"])
    def test_blank_line_has_no_entries(self, line: bytes) -> None:
        assert parse(line) == []

    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            (b"{", "parse_error"),
            (b"nope", "parse_error"),
            (b'{"a":1} {"b":2}', "parse_error"),
            (b'"\xff"', "invalid_utf8"),
            (b"[" * 5000 + b"]" * 5000, "nesting_too_deep"),
            (b'{"x":' * 5000 + b"1" + b"}" * 5000, "nesting_too_deep"),
        ],
    )
    def test_unreadable_line_is_parse_error(self, line: bytes, reason: str) -> None:
        [entry] = parse(line)

        assert isinstance(entry, InvalidEntry)
        assert entry.id is None
        assert entry.error.code == ErrorCode.PARSE_ERROR
        assert entry.error.reason == reason

    @pytest.mark.parametrize(
        ("line", "expected_id"),
        [
            (b'{"jsonrpc":"2.0","id":5,"method":null}', 5),
            (b'{"jsonrpc":"2.0","id":"k","params":{}}', "k"),
            (b'{"jsonrpc":"2.0","id":5,"method":"ping","params":"x"}', 5),
            (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', None),
            (b"42", None),
        ],
    )
    def test_wrong_shape_is_invalid_request(
        self, line: bytes, expected_id: object
    ) -> None:
        [entry] = parse(line)

        assert isinstance(entry, InvalidEntry)
        assert entry.id == expected_id
        assert entry.error.code == ErrorCode.INVALID_REQUEST
        assert entry.error.reason == "invalid_request"

    def test_batch_keeps_order_and_flags_batch(self) -> None:
        parsed = parse_line(
            b'[{"jsonrpc":"2.0","id":1,"method":"a"},3,{"jsonrpc":"2.0","method":"b"}]',
            max_batch_requests=10,
        )

        assert parsed.is_batch
        first, second, third = parsed.entries
        assert isinstance(first, Request) and first.method == "a"
        assert isinstance(second, InvalidEntry)
        assert isinstance(third, Request) and third.is_notification

    def test_empty_batch_is_single_error(self) -> None:
        parsed = parse_line(b"[]", max_batch_requests=10)

        assert not parsed.is_batch
        [entry] = parsed.entries
        assert isinstance(entry, InvalidEntry)
        assert entry.error.reason == "empty_batch"

    def test_batch_over_limit_is_single_error(self) -> None:
        parsed = parse_line(b"[1,2,3]", max_batch_requests=2)

        [entry] = parsed.entries
        assert isinstance(entry, InvalidEntry)
        assert entry.error.code == ErrorCode.LIMIT_EXCEEDED
        assert entry.error.data == {"reason": "batch_too_large", "limit": 2}


class TestDecodeParams:
    def test_absent_and_null_mean_defaults(self) -> None:
        absent = decode_params("jobs.list", msgspec.Raw(), JobsListParams)
        null = decode_params("jobs.list", msgspec.Raw(b"null"), JobsListParams)

        assert absent == JobsListParams(status=None, limit=100)
        assert null == absent

    def test_named_params(self) -> None:
        params = decode_params(
            "jobs.list", msgspec.Raw(b'{"status":"running","limit":3}'), JobsListParams
        )

        assert params.status == JobState.RUNNING
        assert params.limit == 3

    def test_positional_params(self) -> None:
        params = decode_params(
            "videos.list", msgspec.Raw(b'["/srv", 5]'), VideosListParams
        )

        assert params.under == "/srv"
        assert params.limit == 5
        assert params.cursor is None

    @pytest.mark.parametrize(
        ("params_type", "raw", "message"),
        [
            (
                JobGetParams,
                b"{}",
                "invalid params for 'm': Object missing required field `job_id`",
            ),
            (
                ScanParams,
                b'{"path":""}',
                "Expected `str` of length >= 1 - at `params.path`",
            ),
            (
                ScanParams,
                b'{"path":"/a","recursive":"yes"}',
                "Expected `bool`, got `str` - at `params.recursive`",
            ),
            (
                JobGetParams,
                b'{"job_id":-1}',
                "Expected `int` >= 1 - at `params.job_id`",
            ),
            (NoParams, b'{"x":1}', "Object contains unknown field `x`"),
            (NoParams, b"[1]", "got 1 positional params, expected at most 0"),
            (JobGetParams, b'["1"]', "Expected `int`, got `str` - at `params.job_id`"),
        ],
    )
    def test_bad_params_name_the_field(
        self, params_type: type[msgspec.Struct], raw: bytes, message: str
    ) -> None:
        with pytest.raises(ParamsError) as caught:
            decode_params("m", msgspec.Raw(raw), params_type)

        assert message in str(caught.value)


class TestErrors:
    @pytest.mark.parametrize(
        ("exc", "code", "reason"),
        [
            (PathNotAllowedError("path not allowed: '/x'"), -32001, "path_not_allowed"),
            (NotFoundError("job 3 not found"), -32002, "not_found"),
            (PermissionDeniedError("no"), -32003, "permission_denied"),
            (InvalidParamsError("bad cursor"), -32602, "invalid_params"),
            (StorageError("disk full"), -32010, "storage_error"),
            (DaemonError("odd"), -32603, "internal_error"),
        ],
    )
    def test_exception_maps_to_code_and_reason(
        self, exc: DaemonError, code: int, reason: str
    ) -> None:
        error = error_from_exception(exc)

        assert error.code == code
        assert error.message == str(exc)
        assert error.data == {"reason": reason}

    def test_exception_reason_and_data_attributes(self) -> None:
        exc = NotFoundError("video not found")
        exc.reason = "video_not_found"  # type: ignore[attr-defined]
        exc.data = {"path": "/srv/a.mp4"}  # type: ignore[attr-defined]

        error = error_from_exception(exc)

        assert error.data == {"path": "/srv/a.mp4", "reason": "video_not_found"}


class TestEncode:
    def test_single_response_is_one_line(self) -> None:
        line = encode_message(SuccessResponse(id=1, result={"a": [1, 2]}))

        assert line == b'{"jsonrpc":"2.0","id":1,"result":{"a":[1,2]}}\n'

    def test_error_without_data_omits_it(self) -> None:
        line = encode_message(
            ErrorResponse(id=None, error=ErrorObject(code=-32603, message="boom"))
        )

        assert line == (
            b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"boom"}}\n'
        )

    def test_batch_is_one_array_line(self) -> None:
        line = encode_message(
            [SuccessResponse(id=1, result="pong"), SuccessResponse(id=2, result=None)]
        )

        assert line.count(b"\n") == 1
        assert msgspec.json.decode(line) == [
            {"jsonrpc": "2.0", "id": 1, "result": "pong"},
            {"jsonrpc": "2.0", "id": 2, "result": None},
        ]
