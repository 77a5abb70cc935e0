"""Which bulk request went on the wire: the HTTP client whose request hook marks it sent.

An interrupted run cancels the requests that were only queued (free) and finishes the ones
already sent (their tokens are spent). Telling them apart takes a flag per request, set by
the transport's request hook through a context variable; this module holds both, and the
choice of transport.
"""

from __future__ import annotations

import contextvars
from typing import Any

import anthropic

from .reader import Item

__all__ = ["FLIGHT", "Flight", "make_http_client", "mark_sent"]


class Flight:
    """Per-request flag: has an HTTP request for it gone on the wire yet?"""

    __slots__ = ("item", "sent")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.sent = False


#: The request the current task is working for; read by the HTTP client's request hook.
#: Tasks the client starts on its behalf (shared in-flight calls) inherit it.
FLIGHT: contextvars.ContextVar[Flight] = contextvars.ContextVar("asyncthrift_bulk_flight")


async def mark_sent(request: object) -> None:
    flight = FLIGHT.get(None)
    if flight is not None:
        flight.sent = True


def make_http_client() -> Any:
    """The SDK's aiohttp transport when aiohttp is installed, else its httpx default.

    The SDK recommends aiohttp for high concurrency, and it shows: httpx's pool scans every
    connection for each request, which with a few hundred in flight costs about as much CPU
    as everything else together. The request hook marks each request as sent (see `Flight`).
    """
    hooks = {"request": [mark_sent]}
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
    return anthropic.DefaultAioHttpClient(event_hooks=hooks)
