"""Typed errors the client adds to the SDK's own.

The SDK's API errors (`anthropic.RateLimitError`, `anthropic.BadRequestError`, ...) pass through
unchanged. The errors below are raised by asyncthrift *before* anything reaches the network,
and each message says what the caller can change.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "ClientClosed",
    "DeadlineExceeded",
    "InvalidArgument",
    "NoKeysLeft",
    "QueueFull",
    "RequestTooLarge",
    "ThriftError",
    "UnknownModel",
]


class ThriftError(Exception):
    """Base class of every error asyncthrift itself raises."""


class InvalidArgument(ThriftError, ValueError):
    """An argument of the client or of a call has a value it cannot take (``max_tokens=-5``,
    ``deadline=-1``, ``limits="tier9"``, no API key, ...). Raised before anything is queued or
    sent; the message names the argument and what to pass instead. A `ValueError`, so code
    written against the bare SDK's ``except ValueError`` still catches it."""


class UnknownModel(InvalidArgument):
    """A ``claude-*`` model id of no known family while limits are configured: a typo, most
    likely (the message suggests the nearest known id), or a model new to asyncthrift (name
    its limits with ``limits={...}``)."""


class QueueFull(ThriftError):
    """The admission queue already holds `max_queue` requests: shed load or raise the bound."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(ThriftError, TimeoutError):
    """The request was not admitted within its `deadline=`; it was never sent."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceeded(ThriftError):
    """A spending cap would be crossed by this request; it was never sent."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTooLarge(ThriftError, ValueError):
    """The request's own cost exceeds a bucket's capacity: it could never be admitted."""


class ClientClosed(ThriftError, RuntimeError):
    """The client was closed (`aclose()`/`close()`) before this request could be sent, or
    while a failed attempt of it would have been retried. A request that waited for
    admission was never sent and its budget went back."""


class NoKeysLeft(ThriftError):
    """Every API key of the client was refused by the API (401 or 403) and disabled.

    `reasons` maps each key's name to what the API said about it. A refused key is never
    tried again by this client: fix the key (or its permissions) and create a new client.
    """

    def __init__(self, message: str, *, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = dict(reasons or {})
