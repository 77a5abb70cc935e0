"""`bulk/outcomes`: what a failed request means for its result line, one error at a time."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from asyncthrift.bulk.outcomes import failure_of, key_refused_advice
from asyncthrift.errors import DeadlineExceeded, InvalidArgument, QueueFull, RequestTooLarge


def status_error(status: int, error_type: str = "x_error") -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "http://api.test/v1/messages")
    body = {"type": "error", "error": {"type": error_type, "message": "said the API"}}
    response = httpx2.Response(status, json=body, request=request)
    return anthropic.APIStatusError("said the API", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (status_error(400, "invalid_request_error"), "final"),
        (status_error(413, "request_too_large"), "final"),
        (status_error(429, "rate_limit_error"), "transient"),
        (status_error(529, "overloaded_error"), "transient"),
        (status_error(500, "api_error"), "transient"),
        (status_error(401, "authentication_error"), "key_refused"),
        (status_error(403, "permission_error"), "key_refused"),
        (anthropic.APIConnectionError(request=httpx2.Request("POST", "http://x")), "transient"),
        (RequestTooLarge("too big for the limits"), "final"),
        (InvalidArgument("max_tokens must be > 0"), "final"),  # before ThriftError: final
        (TypeError("unexpected keyword"), "final"),
        (QueueFull("full"), "transient"),
        (DeadlineExceeded("late"), "transient"),
        (RuntimeError("a bug"), "transient"),
    ],
)
def test_each_failure_is_final_transient_or_stops_the_run(exc: Exception, kind: str) -> None:
    assert failure_of(exc).kind == kind


def test_a_final_api_error_keeps_its_type_status_and_message() -> None:
    f = failure_of(status_error(400, "invalid_request_error"))
    assert (f.error_type, f.text, f.status) == ("invalid_request_error", "said the API", 400)


def test_the_advice_after_a_refused_key_says_what_to_check() -> None:
    advice = key_refused_advice(401, "401 authentication_error: bad key", "MY_KEY")
    assert "$MY_KEY" in advice and "--api-key-env" in advice and "run the same command" in advice
    assert "--api-key-env" not in key_refused_advice(401, "401 x", None)
    assert "access to this model" in key_refused_advice(403, "403 permission_error: no", None)
