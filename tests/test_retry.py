"""Reading the server's rate-limit headers, and what may be retried."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime

import anthropic
import httpx2
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from asyncthrift.pipeline.retry import RetryPolicy, classify, parse_retry_after, server_view
from asyncthrift.scheduling.bucket import ServerView

P = "anthropic-ratelimit-"
HEADERS = {
    "request-id": "req_1",
    P + "requests-limit": "4000",
    P + "requests-remaining": "3999",
    P + "requests-reset": "2026-11-26T10:30:00Z",
    P + "input-tokens-limit": "2000000",
    P + "input-tokens-remaining": "1999000",
    P + "input-tokens-reset": "2026-11-26T10:30:00Z",
    P + "output-tokens-limit": "400000",
    P + "output-tokens-remaining": "399000",
    P + "tokens-limit": "2400000",
    "retry-after": "3",
    "content-type": "application/json",
}
EXPECTED = ServerView(
    requests_limit=4000,
    requests_remaining=3999,
    input_limit=2_000_000,
    input_remaining=1_999_000,
    output_limit=400_000,
    output_remaining=399_000,
    retry_after=3.0,
    requests_reset=datetime(2026, 11, 26, 10, 30, tzinfo=UTC).timestamp(),
)


def _title_case(headers: Mapping[str, str]) -> dict[str, str]:
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda h: dict(h), id="dict"),
        pytest.param(lambda h: httpx2.Headers(h), id="httpx2"),
        pytest.param(lambda h: httpx2.Headers(_title_case(h)), id="httpx2-title-case"),
        pytest.param(lambda h: _title_case(h), id="dict-title-case"),
        pytest.param(lambda h: CIMultiDictProxy(CIMultiDict(h)), id="aiohttp-multidict"),
    ],
)
def test_server_view_reads_every_header_we_use_whatever_the_mapping(make: object) -> None:
    assert server_view(make(HEADERS)) == EXPECTED  # type: ignore[operator]


def test_server_view_without_rate_limit_headers_is_empty() -> None:
    view = server_view(httpx2.Headers({"request-id": "r", "content-type": "application/json"}))
    assert view == ServerView()
    assert server_view({}) == ServerView()


def test_server_view_ignores_values_it_cannot_read() -> None:
    view = server_view(
        {P + "requests-limit": "lots", P + "requests-remaining": "7", P + "requests-reset": "?"}
    )
    assert view == ServerView(requests_remaining=7.0)


def test_retry_after_ms_wins_and_http_dates_are_read() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "-1", "retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000.0) == pytest.approx(10.0)
    assert server_view(httpx2.Headers({"Retry-After-Ms": "250"})).retry_after == 0.25


def _status_error(status: int, headers: dict[str, str] | None = None) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return anthropic.APIStatusError("x", response=response, body=None)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retried(status: int) -> None:
    decision = classify(_status_error(status, {"retry-after": "1"}))
    assert decision.retry and decision.status == status and decision.retry_after == 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_never_retried_whatever_the_hint(status: int) -> None:
    assert not classify(_status_error(status, {"x-should-retry": "true"})).retry


def test_the_server_hint_decides_the_rest() -> None:
    assert not classify(_status_error(503, {"x-should-retry": "false"})).retry
    assert classify(_status_error(409)).retry
    assert classify(_status_error(418, {"x-should-retry": "true"})).retry
    assert not classify(_status_error(418)).retry


def test_connection_errors_are_retried_and_anything_else_is_not() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
    assert classify(anthropic.APIConnectionError(request=request)).retry
    assert not classify(ValueError("bug")).retry


def test_backoff_is_full_jitter_under_a_cap() -> None:
    policy = RetryPolicy(max_retries=3, base=0.5, cap=4.0)
    assert policy.backoff(0, rand=lambda: 1.0) == 0.5
    assert policy.backoff(10, rand=lambda: 1.0) == 4.0
    assert policy.backoff(3, rand=lambda: 0.0) == 0.0
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
