"""The HTTP status an error stands for: the one mapping, for retries, refunds and observers.

A stream's ``error`` event arrives in a 200 response; for retries and refunds it means the
status its type stands for (``overloaded_error``: 529), which `error_status` gives. Observers
label the response as it came (`status_of`: a 200 error event stays 200, success is 200).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import anthropic

__all__ = ["EVENT_ERROR_STATUS", "error_status", "status_of"]

#: What an ``error`` event's type means as an HTTP status (a stream's error in a 200).
EVENT_ERROR_STATUS: Final = {
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "api_error": 500,
    "timeout_error": 504,
}


def error_status(error: BaseException) -> int | None:
    """The HTTP status `error` stands for (an ``error`` event in a 200: its type's status,
    or 200 for a type of no known status); None when there was no response."""
    if not isinstance(error, anthropic.APIStatusError):
        return None
    status = error.status_code
    if status == 200:
        body = error.body
        err = body.get("error") if isinstance(body, Mapping) else None
        kind = err.get("type") if isinstance(err, Mapping) else None
        return EVENT_ERROR_STATUS.get(kind, status) if isinstance(kind, str) else status
    return status


def status_of(error: BaseException | None) -> int | None:
    """The HTTP status behind `error` (200 for success, None when there was no response)."""
    if error is None:
        return 200
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code
    return None
