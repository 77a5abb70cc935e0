"""The routes of ``messages.create``: its innermost send, plain or with the raw response.

Each route calls one SDK Messages resource, chosen by a `Resource`: ``client.messages``
(`MESSAGES`) or ``client.beta.messages`` (`BETA_MESSAGES`); the beta routes are the same
steps on the beta resource, so beta calls are admitted, resynced and retried alike.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

import anthropic
import httpx2
from anthropic import AsyncStream
from anthropic.types import Message, RawMessageStreamEvent

from ..core._sdk import accumulate, collected_message, plain_message, status_error
from ..core._status import error_status
from ._attempt import Attempt, Plan, Planner, Route, SendFailed

if TYPE_CHECKING:
    from anthropic.types.parsed_message import ParsedMessage

__all__ = [
    "BETA_CREATE",
    "BETA_MESSAGES",
    "BETA_RAW_CREATE",
    "CREATE",
    "FALLBACK_HEADER",
    "MESSAGES",
    "RAW_CREATE",
    "ProbeRoute",
    "Resource",
    "stream_error_meaning",
]

Resource: TypeAlias = Callable[[anthropic.AsyncAnthropic], Any]
"""The SDK Messages resource a route calls, from the admitted key's client."""
MESSAGES: Final[Resource] = operator.attrgetter("messages")
BETA_MESSAGES: Final[Resource] = operator.attrgetter("beta.messages")

#: Set on a raw response a fallback model answered: the model the call asked for
#: (the answering model is the message's own ``model``).
FALLBACK_HEADER: Final = "asyncthrift-fallback-from"


class ProbeRoute(Protocol):
    """How a route sends a cold start's probe, when it has a faster way to its headers.

    The pipeline resyncs the budget from the headers `send` brings (at their start) and then
    awaits `finish` for the caller's answer, which settles the attempt.
    """

    headers_at_start: bool

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any: ...
    async def finish(self, attempt: Attempt, result: Any) -> Any: ...


class _CreateRoute:
    """``messages.create``: the SDK's call, its `Message` reconciled at once."""

    __slots__ = ("probe", "resource")
    headers_at_start = False

    def __init__(self, resource: Resource = MESSAGES, probe: ProbeRoute | None = None) -> None:
        self.resource = resource
        #: how this route sends a cold start's probe (None: as any other request)
        self.probe = probe

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return planner.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await self.resource(sdk).create(**params)

    def received(self, attempt: Attempt, result: Any) -> Any:
        message: Message = result
        attempt.succeeded(message.model, message.usage)
        return message


class _StreamedProbe:
    """``messages.create`` as a cold start's probe: sent as a stream, read to its end, and
    returned as the `Message` the non-streamed call would have returned.

    Why: until the probe's headers arrive the rest of a burst waits (or goes at the refill's
    pace), because the key's level is unknown. A non-streamed answer's headers come with the
    answer, after generation: seconds for a long one (3.6 s at 2 s + 20 ms per token, 5 % of
    a run's makespan at the real 60 s period). A stream's headers go out at its start, as
    the API documents, so the burst waits one time-to-first-byte instead of one answer. The
    caller sees no difference but the transport: same `Message` class, same ``_request_id``,
    same usage; a cancelled probe is abandoned as any request in flight is (its output held
    until the answer would have ended), an error event becomes the status it stands for.

    Its events are timed too (`Attempt.stream_event`, `Attempt.stream_ended`): a burst
    cancelled before any answer ended is held for what the probe's stream showed of the
    answers' fixed latency and pace, not for a prior.
    """

    __slots__ = ()
    headers_at_start = True

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await MESSAGES(sdk).create(**{**params, "stream": True})

    async def finish(self, attempt: Attempt, result: Any) -> Message:
        upstream: AsyncStream[RawMessageStreamEvent] = result
        response = upstream.response
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            # a server (or a proxy) that answered the whole message anyway
            message = plain_message(await response.aread(), response.headers)
            attempt.succeeded(message.model, message.usage)
            return message
        snapshot: ParsedMessage[Any] | None = None
        bufs: dict[int, bytes] = {}
        carried: set[str] = set()
        timing = True  # until the first text: when the answer started, its fixed latency
        try:
            async for event in upstream:
                snapshot = accumulate(event, snapshot, bufs)
                if timing:
                    timing = event.type != "content_block_delta"
                    attempt.stream_event(first_text=not timing)
                if event.type == "message_start":
                    carried.update(event.message.model_fields_set)
                elif event.type == "message_delta":
                    carried.update(event.delta.model_fields_set)
        except BaseException as exc:
            await upstream.close()
            meaning = stream_error_meaning(exc, upstream, attempt.call.sdks[attempt.index])
            if meaning is not exc:
                raise SendFailed(meaning, exc) from exc
            raise
        if snapshot is None or snapshot.stop_reason is None:  # ended before message_stop
            raise anthropic.APIConnectionError(request=upstream.response.request)
        message = collected_message(snapshot, upstream.response.headers, carried)
        attempt.stream_ended(message.usage.output_tokens)  # the pace of its deltas
        attempt.succeeded(message.model, message.usage)
        return message


def stream_error_meaning(
    exc: BaseException,
    upstream: AsyncStream[RawMessageStreamEvent] | None,
    sdk: anthropic.AsyncAnthropic,
) -> BaseException:
    """What `exc`, raised while reading a stream, means for retries and refunds.

    An HTTP error status or a failed connect is already what the non-streamed path sees. An
    ``error`` event in a 200 response becomes the status error its type stands for, and a
    connection dropped while reading becomes an `APIConnectionError`; anything else (a
    cancellation, a 200 error of another type) is returned as is.
    """
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 200:
        status = error_status(exc)
        if status is None or status == 200:
            return exc
        response = httpx2.Response(status, headers=exc.response.headers, request=exc.request)
        return status_error(sdk, str(exc), exc.body, response)
    if isinstance(exc, httpx2.TransportError) and upstream is not None:
        return anthropic.APIConnectionError(request=upstream.response.request)
    return exc


CREATE: Final[Route] = _CreateRoute(probe=_StreamedProbe())
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
