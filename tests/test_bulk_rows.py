"""Every result line the bulk runner writes is a Batches-API result: it validates as
``anthropic.types.messages.MessageBatchIndividualResponse``, in plain and in ``--batch`` mode.

The API nests an error *response* in an ``errored`` result
(``"error": {"type": "error", "error": {"type": ..., "message": ...}}``) and knows a fixed set
of error types; a line that is not in that shape breaks every reader built on the SDK's types.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from asyncthrift import Limits
from asyncthrift.bulk import BulkConfig, run_bulk
from asyncthrift.mock import MockServer

asyncio.set_event_loop(None)

MODEL = "claude-sonnet-4-6"


def request(custom_id: str, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": f"hello ({custom_id})"}],
            **params,
        },
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def validated(path: Path) -> dict[str, MessageBatchIndividualResponse]:
    """Every line of `path`, validated as the SDK's type (raises on the first that is not)."""
    out = {}
    for raw in path.read_bytes().splitlines():
        row = MessageBatchIndividualResponse.model_validate(orjson.loads(raw))
        out[row.custom_id] = row
    return out


def error_of(row: MessageBatchIndividualResponse) -> tuple[str, str]:
    result = row.result
    assert result.type == "errored"
    return result.error.error.type, result.error.error.message


async def test_every_row_of_a_plain_run_validates(tmp_path: Path) -> None:
    rows = [
        request("ok"),
        {"custom_id": "no-params"},  # refused before sending
        {**request("bad-prio"), "priority": "soon"},  # refused before sending
        request("server-400", messages=[{"role": "robot"}]),  # the API's 400
        request("too-large", max_tokens=5000),  # can never fit the limits
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    async with MockServer() as mock:
        config = BulkConfig(
            input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", api_key="k",
            base_url=mock.base_url, quiet=True, handle_signals=False,
            limits=Limits(rpm=100, otpm=1000, period=1),
        )  # fmt: skip
        report = await run_bulk(config, stderr=io.StringIO())
    got = validated(tmp_path / "out.jsonl")
    assert set(got) == {"ok", "no-params", "bad-prio", "server-400", "too-large"}
    assert report.succeeded == 1 and report.errored == 4
    assert got["ok"].result.type == "succeeded"
    for cid in ("no-params", "bad-prio", "server-400"):
        assert error_of(got[cid])[0] == "invalid_request_error", cid
    kind, message = error_of(got["too-large"])
    assert kind == "invalid_request_error" and message.startswith("request_too_large: ")
    server = got["server-400"].result
    assert server.type == "errored" and server.error.request_id  # the API's, for support


async def test_a_request_the_client_refuses_is_errored_not_transient(tmp_path: Path) -> None:
    """`InvalidArgument` (here `UnknownModel`: a typo under a limits preset) is a ThriftError
    and a ValueError: a line no retry can fix, written as errored like the SDK's own argument
    checks, not reported as transient (and sent again by every run)."""
    write_jsonl(tmp_path / "in.jsonl", [request("ok"), request("typo", model="claude-sonet-4-5")])
    async with MockServer() as mock:
        config = BulkConfig(
            input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", api_key="k",
            base_url=mock.base_url, quiet=True, handle_signals=False, limits="tier4",
        )  # fmt: skip
        report = await run_bulk(config, stderr=io.StringIO())
        assert mock.counters.requests == 1  # the typo never went upstream
    got = validated(tmp_path / "out.jsonl")
    assert set(got) == {"ok", "typo"}
    assert report.succeeded == 1 and report.errored == 1 and report.transient == 0
    kind, message = error_of(got["typo"])
    assert kind == "invalid_request_error"
    assert "unknown model 'claude-sonet-4-5' (did you mean 'claude-sonnet-4-5'?)" in message


async def test_every_row_of_a_batch_run_validates(tmp_path: Path) -> None:
    # first in its batch, so it is answered before the batch expires: the API's errored result
    rows = [request("server-400", messages=[{"role": "robot"}])]
    rows += [request(f"item-{i}") for i in range(30)]  # the later ones expire
    rows += [
        {"custom_id": "no-params"},  # refused before submitting
        request("bad id!"),  # not a custom_id the Batches API takes: refused locally
        request("streamed", stream=True),  # refused locally
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    async with MockServer(
        batch_latency=0.0, batch_seconds_per_request=0.02, batch_expiry=0.3
    ) as mock:
        config = BulkConfig(
            input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", api_key="k",
            base_url=mock.base_url, quiet=True, handle_signals=False, batch="on",
            batch_poll=0.05,
        )  # fmt: skip
        await run_bulk(config, stderr=io.StringIO())
    got = validated(tmp_path / "out.jsonl")
    assert len(got) == len(rows)
    kinds = {row.result.type for row in got.values()}
    assert {"succeeded", "errored", "expired"} <= kinds  # every kind the batch run met
    assert error_of(got["no-params"])[0] == "invalid_request_error"
    assert error_of(got["bad id!"])[0] == "invalid_request_error"
    assert error_of(got["streamed"])[0] == "invalid_request_error"
    assert error_of(got["server-400"])[0] == "invalid_request_error"


@pytest.mark.parametrize(
    ("error_type", "status", "expected"),
    [
        ("invalid_request_error", 400, "invalid_request_error"),
        ("not_found_error", 404, "not_found_error"),
        ("request_too_large", 413, "invalid_request_error"),
        ("request_too_large", None, "invalid_request_error"),
        ("http_418", 418, "invalid_request_error"),
        ("http_402", 402, "billing_error"),
        ("http_504", 504, "timeout_error"),
        ("http_500", 500, "api_error"),
        ("some_new_error", 529, "overloaded_error"),
    ],
)
def test_an_error_type_the_api_results_never_carry_is_mapped(
    error_type: str, status: int | None, expected: str
) -> None:
    from asyncthrift.bulk.journal import API_ERROR_TYPES, api_error_type, errored_line

    assert api_error_type(error_type, status) == expected
    line = errored_line("x", error_type, "why", status=status, request_id="req_1")
    row = MessageBatchIndividualResponse.model_validate(orjson.loads(line))
    kind, message = error_of(row)
    assert kind == expected in API_ERROR_TYPES
    assert message == ("why" if error_type == expected else f"{error_type}: why")


def test_every_error_type_kept_as_is_is_one_the_sdk_accepts() -> None:
    """`API_ERROR_TYPES` is what `errored_line` writes unchanged: each must validate as the
    SDK's type, or a row of it would break the readers the rows are shaped for."""
    from asyncthrift.bulk.journal import API_ERROR_TYPES, errored_line

    for kind in sorted(API_ERROR_TYPES):
        row = MessageBatchIndividualResponse.model_validate(
            orjson.loads(errored_line("x", kind, "why"))
        )
        assert error_of(row) == (kind, "why"), kind
