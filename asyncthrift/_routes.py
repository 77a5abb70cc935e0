"""The routes of ``messages.create``: its innermost send, plain or with the raw response.

Each route calls one SDK Messages resource, chosen by a `Resource`: ``client.messages``
(`MESSAGES`) or ``client.beta.messages`` (`BETA_MESSAGES`); the beta routes are the same
steps on the beta resource, so beta calls are admitted, resynced and retried alike.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anthropic
from anthropic.types import Message

from ._attempt import Attempt, Plan, Planner, Route

if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = [
    "BETA_CREATE",
    "BETA_MESSAGES",
    "BETA_RAW_CREATE",
    "CREATE",
    "FALLBACK_HEADER",
    "MESSAGES",
    "RAW_CREATE",
    "Resource",
]

Resource: TypeAlias = Callable[[anthropic.AsyncAnthropic], Any]
"""The SDK Messages resource a route calls, from the admitted key's client."""
MESSAGES: Final[Resource] = operator.attrgetter("messages")
BETA_MESSAGES: Final[Resource] = operator.attrgetter("beta.messages")

#: Set on a raw response a fallback model answered: the model the call asked for
#: (the answering model is the message's own ``model``).
FALLBACK_HEADER: Final = "asyncthrift-fallback-from"


class _CreateRoute:
    """``messages.create``: the SDK's call, its `Message` reconciled at once."""

    __slots__ = ("resource",)
    headers_at_start = False

    def __init__(self, resource: Resource = MESSAGES) -> None:
        self.resource = resource

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return planner.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await self.resource(sdk).create(**params)

    def received(self, attempt: Attempt, result: Any) -> Any:
        message: Message = result
        attempt.succeeded(message.model, message.usage)
        return message


CREATE: Final[Route] = _CreateRoute()
BETA_CREATE: Final[Route] = _CreateRoute(BETA_MESSAGES)


class _RawCreateRoute(_CreateRoute):
    """``messages.with_raw_response.create``: the SDK's raw response, its `Message` reconciled."""

    __slots__ = ()

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        raw = await self.resource(sdk).with_raw_response.create(**params)
        return raw, await raw.parse()  # the SDK keeps the parsed answer for the caller

    def received(self, attempt: Attempt, result: Any) -> Any:
        raw, message = result
        attempt.succeeded(message.model, message.usage)
        asked = attempt.call.fell_back_from
        if asked is not None:  # a fallback model answered: say which was asked for
            raw.http_response.headers[FALLBACK_HEADER] = asked
        return raw


RAW_CREATE: Final[Route] = _RawCreateRoute()
BETA_RAW_CREATE: Final[Route] = _RawCreateRoute(BETA_MESSAGES)
