"""The forwarding route of ``messages.create``: the request's JSON sent as it is, and the
answer kept as the bytes that came (`RawAnswer`), only its usage and stop reason read.

Why: a gateway (``asyncthrift serve``) passes answers on. Through the SDK every answer is
built into request models, sent, parsed into a `Message` and serialised again, which was
most of the gateway's CPU per request and of the latency it adds (bench/RESULTS.md). This
route sends on the admitted key's own HTTP client (its header hook sees the response, so
the budget resyncs as for any call) with the SDK's headers read once per client, and reads
the answer once with orjson. Errors are the SDK's exception classes, made as the SDK makes
them, so retries, refunds and abandonment are the pipeline's, as for ``create``.

The params must be JSON values as the API takes them (a parsed request body): nothing here
converts SDK types. ``extra_body``, ``extra_headers`` and ``extra_query`` are applied as
the SDK applies them. A cold start's probe goes as ``create``'s does (a stream, its
`Message` turned into a `RawAnswer`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Final

import anthropic
import httpx2
import orjson
from anthropic.types import Message, Usage

from ._attempt import Attempt, Plan, Planner
from ._forward_http import Endpoint
from ._routes import CREATE, ProbeRoute

__all__ = ["EARLY_ANSWER", "ForwardRoute", "RawAnswer", "request_parts"]

#: The body fields the SDK takes out of a call's arguments (they are not API fields).
_SDK_OPTIONS: Final = ("extra_body", "extra_headers", "extra_query", "timeout")


#: The usage fields settling reads (`Attempt.succeeded`, `usage_cost`).
_USAGE_COUNTS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class RawAnswer:
    """A non-streamed Messages answer as the upstream sent it: its bytes, its ``request-id``
    and what settling needs (model, usage, stop reason). Twins of one call in flight share
    one (treat it as read-only)."""

    __slots__ = ("body", "data", "fell_back_from", "model", "request_id", "stop_reason", "usage")

    def __init__(
        self,
        body: bytes,
        data: Mapping[str, Any],
        request_id: str | None,
        model: str,
        usage: Usage,
        stop_reason: str | None,
    ) -> None:
        self.body = body
        #: the body parsed (what the cache stores)
        self.data = data
        self.request_id = request_id
        self.model = model
        self.usage = usage
        self.stop_reason = stop_reason
        #: the model the call asked for, when a fallback model answered it
        self.fell_back_from: str | None = None

    @classmethod
    def of_message(cls, message: Message) -> RawAnswer:
        """`message` written as JSON with the fields it was read with (``exclude_unset``),
        so what a client parses equals what the API sent."""
        request_id = getattr(message, "_request_id", None)  # the SDK keeps it on the answer
        return cls(
            message.to_json(indent=None).encode(),
            message.model_dump(mode="json", exclude_unset=True),  # as the cache writes it
            request_id if isinstance(request_id, str) and request_id else None,
            message.model,
            message.usage,
            message.stop_reason,
        )

    @classmethod
    def of_body(cls, body: bytes, request_id: str | None) -> RawAnswer:
        """The answer in `body`; ValueError when it is not a Messages answer (no usage)."""
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise ValueError("the answer is not a JSON object")
        usage = data.get("usage")
        if not isinstance(usage, dict):
            raise ValueError("the answer has no usage")
        # the counts settling needs, validated (a model's own `construct` costs 60 us)
        counts = {name: usage[name] for name in _USAGE_COUNTS if name in usage}
        parsed = Usage.model_validate(counts)  # a pydantic ValidationError is a ValueError
        model = data.get("model")
        stop = data.get("stop_reason")
        return cls(
            body,
            data,
            request_id,
            model if isinstance(model, str) else "",
            parsed,
            stop if isinstance(stop, str) else None,
        )


#: Who takes an answer the moment it is read, before the pipeline settles it (None: nobody).
#: A gateway sets it around one request's call (`asyncthrift.gateway.early`), to write the
#: answer to its client at once: settling it, resyncing the budget from its headers and the
#: caller's own books follow, but the answer is final once read (an answer that does not
#: parse is not given: it is retried or fails as before). Called at most once per call
#: (the taker ignores a second answer, e.g. of a retry after a failure in settling), and
#: it must not raise.
EARLY_ANSWER: ContextVar[Callable[[RawAnswer], Awaitable[None]] | None] = ContextVar(
    "asyncthrift_early_answer", default=None
)


class _ForwardedProbe:
    """A cold start's probe as ``create`` sends it (a stream: its headers come at its
    start), its `Message` turned into a `RawAnswer`."""

    __slots__ = ("probe",)
    headers_at_start = True

    def __init__(self, probe: ProbeRoute) -> None:
        self.probe = probe

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await self.probe.send(sdk, params)

    async def finish(self, attempt: Attempt, result: Any) -> RawAnswer:
        message: Message = await self.probe.finish(attempt, result)
        answer = RawAnswer.of_message(message)
        answer.fell_back_from = attempt.call.fell_back_from
        return answer


class ForwardRoute:
    """``messages.create`` forwarded: see the module's docstring. One per set of SDK
    clients: it keeps each client's `Endpoint` (URL, headers, its own aiohttp session);
    `aclose` closes those sessions."""

    __slots__ = ("_beta", "_clients", "_endpoints", "probe")
    headers_at_start = False

    def __init__(self, sdks: Sequence[anthropic.AsyncAnthropic], *, beta: bool = False) -> None:
        self._beta = beta  # ``client.beta.messages``: ``POST /v1/messages?beta=true``
        self._clients = list(sdks)  # alive as long as the route: their ids stay theirs
        self._endpoints = {id(sdk): Endpoint(sdk, beta=beta) for sdk in sdks}
        probe: ProbeRoute | None = None if beta else getattr(CREATE, "probe", None)
        self.probe = None if probe is None else _ForwardedProbe(probe)

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return planner.plan(params)

    def endpoint(self, sdk: anthropic.AsyncAnthropic) -> Endpoint:
        """Where `sdk` sends (made once per client)."""
        endpoint = self._endpoints.get(id(sdk))
        if endpoint is None:  # a client this route was not made with
            endpoint = self._endpoints[id(sdk)] = Endpoint(sdk, beta=self._beta)
            self._clients.append(sdk)  # kept alive: its id stays its own
        return endpoint

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> RawAnswer:
        endpoint = self.endpoint(sdk)
        body, headers, query = request_parts(params, endpoint.headers)
        content, request_id = await endpoint.post(sdk, body, headers, query)
        try:
            answer = RawAnswer.of_body(content, request_id)
        except ValueError as exc:
            response = httpx2.Response(
                200, content=content, request=httpx2.Request("POST", endpoint.url)
            )
            raise anthropic.APIResponseValidationError(
                response, content, message=f"not a Messages answer: {exc}"
            ) from None
        early = EARLY_ANSWER.get()
        if early is not None:
            await early(answer)
        return answer

    async def aclose(self) -> None:
        """Close the HTTP sessions of its own (its aiohttp endpoints')."""
        for endpoint in self._endpoints.values():
            await endpoint.aclose()

    def received(self, attempt: Attempt, result: Any) -> RawAnswer:
        answer: RawAnswer = result
        attempt.succeeded(answer.model, answer.usage)
        answer.fell_back_from = attempt.call.fell_back_from
        return answer


def request_parts(
    params: Mapping[str, Any], base: dict[str, str]
) -> tuple[bytes, dict[str, str], Mapping[str, Any] | None]:
    """(JSON body, headers, query) of a call's params, as the SDK would send them."""
    if not any(name in params for name in _SDK_OPTIONS):
        return orjson.dumps(params), base, None
    fields = {k: v for k, v in params.items() if k not in _SDK_OPTIONS}
    extra_body = params.get("extra_body")
    if isinstance(extra_body, Mapping):
        fields.update(extra_body)
    headers = base
    extra_headers = params.get("extra_headers")
    if isinstance(extra_headers, Mapping) and extra_headers:
        headers = {**base, **extra_headers}
    query = params.get("extra_query")
    return orjson.dumps(fields), headers, query if isinstance(query, Mapping) and query else None
