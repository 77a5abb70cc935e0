"""The routes of ``messages.create``: its innermost send, plain or with the raw response."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anthropic
from anthropic.types import Message

from ._attempt import Attempt, Plan, Route

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._pipeline import Pipeline

__all__ = ["CREATE", "FALLBACK_HEADER", "RAW_CREATE"]

#: Set on a raw response a fallback model answered: the model the call asked for
#: (the answering model is the message's own ``model``).
FALLBACK_HEADER: Final = "asyncthrift-fallback-from"


class _CreateRoute:
    """``messages.create``: the SDK's call, its `Message` reconciled at once."""

    __slots__ = ()
    headers_at_start = False

    def plan(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Plan:
        return pipeline.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await sdk.messages.create(**params)

    def received(self, attempt: Attempt, result: Any) -> Any:
        message: Message = result
        attempt.succeeded(message.model, message.usage)
        return message


CREATE: Final[Route] = _CreateRoute()


class _RawCreateRoute(_CreateRoute):
    """``messages.with_raw_response.create``: the SDK's raw response, its `Message` reconciled."""

    __slots__ = ()

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        raw = await sdk.messages.with_raw_response.create(**params)
        return raw, await raw.parse()  # the SDK keeps the parsed answer for the caller

    def received(self, attempt: Attempt, result: Any) -> Any:
        raw, message = result
        attempt.succeeded(message.model, message.usage)
        asked = attempt.call.fell_back_from
        if asked is not None:  # a fallback model answered: say which was asked for
            raw.http_response.headers[FALLBACK_HEADER] = asked
        return raw


RAW_CREATE: Final[Route] = _RawCreateRoute()
