"""What a failed request means for its result line: written, left for a rerun, or the run stops.

Why a module of its own: the runner moves requests (feeding, flights, signals, the journal);
this is the rule the runner's docstring states, in one place both runners (plain and
``--batch``) follow. An error that repeating cannot fix (a 400, a request too large for the
limits, invalid arguments) is *final*: its errored result line is written. One a later
attempt could fix (429, 5xx, a dropped connection, a queue or deadline refusal) is
*transient*: nothing is written, so running the same command again retries it. A 401/403 is
about the key, not the line: the run stops and writes nothing for it.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

import anthropic

from ..errors import RequestTooLarge, ThriftError
from ..pipeline.retry import classify

__all__ = ["KEY_REFUSED", "Failure", "failure_of", "key_refused_advice"]

#: Statuses that say the key itself is unusable: every other request would get the same.
KEY_REFUSED: Final = frozenset({401, 403})


class Failure(NamedTuple):
    """One request's failure, as its line sees it (`failure_of`)."""

    #: ``"final"``: write an errored line; ``"transient"``: write nothing, a rerun retries
    #: it; ``"key_refused"``: stop the run (`key_refused_advice`).
    kind: Literal["final", "transient", "key_refused"]
    #: The errored line's ``error.type`` (final), or a short label of the failure.
    error_type: str
    #: What went wrong, for the line or the report.
    text: str
    status: int | None = None
    request_id: str | None = None


def failure_of(exc: Exception) -> Failure:
    """What `exc`, raised by ``Thrift.messages.create`` after the client's own retries,
    means for the request's line."""
    if isinstance(exc, anthropic.APIStatusError):
        error_type = exc.type or f"http_{exc.status_code}"
        text = exc.api_message or str(exc)
        if exc.status_code in KEY_REFUSED:
            return Failure("key_refused", error_type, text, exc.status_code)
        if classify(exc).retry:
            return Failure("transient", error_type, f"{exc.status_code} {error_type}: {text}")
        return Failure("final", error_type, text, exc.status_code, exc.request_id)
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure("transient", type(exc).__name__, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, RequestTooLarge):
        return Failure("final", "request_too_large", str(exc))
    # the client's and the SDK's argument checks, before ThriftError: InvalidArgument
    # (UnknownModel, ...) is both, and final
    if isinstance(exc, TypeError | ValueError):
        return Failure("final", "invalid_request_error", str(exc))
    if isinstance(exc, ThriftError):  # QueueFull, DeadlineExceeded, BudgetExceeded: not final
        return Failure("transient", type(exc).__name__, f"{type(exc).__name__}: {exc}")
    # a bug must not stop the other requests, nor be hidden
    return Failure("transient", type(exc).__name__, f"unexpected {type(exc).__name__}: {exc}")


def key_refused_advice(status: int, what: str, env: str | None) -> str:
    """What to change after a 401/403 (`what`: the status and the API's message); `env`:
    the variable the key was read from, if any."""
    where = f"${env}" if env else "the API key"
    if status == 401:
        fix = (
            f"the API refused the key ({what}). Check {where}"
            + (" (or choose another variable with --api-key-env NAME)" if env else "")
            + " and the --base-url it belongs to"
        )
    else:
        fix = (
            f"the key is not allowed to make these requests ({what}). Use a key with "
            "access to this model and workspace"
        )
    return (
        f"{fix}, then run the same command again: no result line was written for refused requests"
    )
