"""`client.beta`: the SDK's beta resources, with ``beta.messages`` scheduled like ``messages``.

The bare SDK's ``client.beta.messages.create`` would go around the scheduler (the easiest way
to earn a 429 behind asyncthrift's back), so `BetaMessages` sends every beta Messages call
through the same pipeline as ``client.messages``: the same model-class budgets, lanes,
``deadline=``, header resync and retries, counted in ``stats()``. Only the innermost send
differs (the beta routes in `_routes`, `streaming` and `counting`). Beta answers are the SDK's
``Beta*`` types, so they are never cached, shared with a twin in flight or packed: ``cache``,
``dedupe``, ``pack`` and ``task`` do not apply. ``batches`` is ``client.batches`` on the beta
endpoints (same budget, retries and counters). Everything else under ``beta`` (files, models,
skills, ...) is the SDK's own resource, passed through unscheduled; so are
``beta.messages.tool_runner`` and ``thread``, which drive the SDK client themselves.

`client.beta` itself, the SDK's object with ``messages`` swapped for `BetaMessages`, is
`_views.Beta`. The typed signatures are the installed SDK's (``scripts/gen_signatures.py --beta``;
`tests/test_facade.py` fails when they drift apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, overload

import anthropic
from anthropic import AsyncStream
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount, BetaRawMessageStreamEvent

from ..core._sdk import ResponseFormatT, parsed_beta
from ..pipeline._options import stream_requested
from ..pipeline._routes import BETA_CREATE, BETA_MESSAGES, BETA_RAW_CREATE
from ..savings.batches import Batches
from ..savings.compression import compress_kwargs
from ..scheduling.lanes import Priority
from ._messages import Facade, parse_kwargs
from ._pipeline import COUNT_TOKENS_CLASS, Pipeline
from ._raw_responses import RawMessages, StreamingMessages
from .counting import count_tokens, split_count_kwargs
from .streaming import BETA_STREAM, BetaStreamManager, open_event_stream

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Literal

    import httpx2
    from anthropic import NotGiven, Omit
    from anthropic.types import AnthropicBetaParam, ModelParam
    from anthropic.types.beta import (
        BetaBillingPolicyParam,
        BetaCacheControlEphemeralParam,
        BetaCompactionConfigParam,
        BetaContextManagementConfigParam,
        BetaDiagnosticsParam,
        BetaFallbacksParam,
        BetaMessageParam,
        BetaMessageThreadParam,
        BetaMetadataParam,
        BetaOutputConfigParam,
        BetaRequestMCPServerURLDefinitionParam,
        BetaTextBlockParam,
        BetaThinkingConfigParam,
        BetaToolChoiceParam,
        message_create_params,
    )
    from anthropic.types.beta.parsed_beta_message import ParsedBetaMessage

    from ..core._sdk import BetaToolLike, Body, Headers, Query, SequenceNotStr

__all__ = ["BetaMessages", "BetaStreamManager"]


class BetaMessages(Facade):
    """`client.beta.messages`: the SDK's beta Messages resource, scheduled (never cached)."""

    __slots__ = ("_batches",)

    def __init__(
        self,
        pipeline: Pipeline,
        sdks: Sequence[anthropic.AsyncAnthropic],
        max_retries: int,
        batches: Callable[[], Batches],
    ) -> None:
        super().__init__(pipeline, sdks, max_retries)
        self._batches = batches

    @overload
    async def create(
        self,
        *,
        max_tokens: int,
        messages: Iterable[BetaMessageParam],
        model: ModelParam,
        billing_policy: BetaBillingPolicyParam | Omit | None = ...,
        cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
        compaction: BetaCompactionConfigParam | Omit | None = ...,
        container: message_create_params.Container | Omit | None = ...,
        context_management: BetaContextManagementConfigParam | Omit | None = ...,
        diagnostics: BetaDiagnosticsParam | Omit | None = ...,
        fallback_credit_token: message_create_params.FallbackCreditToken | Omit | None = ...,
        fallbacks: BetaFallbacksParam | Omit | None = ...,
        inference_geo: str | Omit | None = ...,
        mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
        metadata: BetaMetadataParam | Omit = ...,
        output_config: BetaOutputConfigParam | Omit = ...,
        service_tier: Literal["auto", "standard_only"] | Omit = ...,
        speed: Literal["standard", "fast"] | Omit | None = ...,
        stop_sequences: SequenceNotStr[str] | Omit = ...,
        stream: Literal[False] | Omit = ...,
        system: str | Iterable[BetaTextBlockParam] | Omit = ...,
        thinking: BetaThinkingConfigParam | Omit = ...,
        thread: BetaMessageThreadParam | Omit | None = ...,
        tool_choice: BetaToolChoiceParam | Omit = ...,
        tools: Iterable[BetaToolLike] | Omit = ...,
        betas: list[AnthropicBetaParam] | Omit = ...,
        user_profile_id: str | Omit = ...,
        workspace_id: str | Omit = ...,
        extra_headers: Headers | None = ...,
        extra_query: Query | None = ...,
        extra_body: Body | None = ...,
        timeout: float | httpx2.Timeout | NotGiven | None = ...,  # noqa: ASYNC109
        priority: Priority | None = ...,
        deadline: float | None = ...,
    ) -> BetaMessage: ...

    @overload
    async def create(
        self,
        *,
        max_tokens: int,
        messages: Iterable[BetaMessageParam],
        model: ModelParam,
        stream: Literal[True],
        billing_policy: BetaBillingPolicyParam | Omit | None = ...,
        cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
        compaction: BetaCompactionConfigParam | Omit | None = ...,
        container: message_create_params.Container | Omit | None = ...,
        context_management: BetaContextManagementConfigParam | Omit | None = ...,
        diagnostics: BetaDiagnosticsParam | Omit | None = ...,
        fallback_credit_token: message_create_params.FallbackCreditToken | Omit | None = ...,
        fallbacks: BetaFallbacksParam | Omit | None = ...,
        inference_geo: str | Omit | None = ...,
        mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
        metadata: BetaMetadataParam | Omit = ...,
        output_config: BetaOutputConfigParam | Omit = ...,
        service_tier: Literal["auto", "standard_only"] | Omit = ...,
        speed: Literal["standard", "fast"] | Omit | None = ...,
        stop_sequences: SequenceNotStr[str] | Omit = ...,
        system: str | Iterable[BetaTextBlockParam] | Omit = ...,
        thinking: BetaThinkingConfigParam | Omit = ...,
        thread: BetaMessageThreadParam | Omit | None = ...,
        tool_choice: BetaToolChoiceParam | Omit = ...,
        tools: Iterable[BetaToolLike] | Omit = ...,
        betas: list[AnthropicBetaParam] | Omit = ...,
        user_profile_id: str | Omit = ...,
        workspace_id: str | Omit = ...,
        extra_headers: Headers | None = ...,
        extra_query: Query | None = ...,
        extra_body: Body | None = ...,
        timeout: float | httpx2.Timeout | NotGiven | None = ...,  # noqa: ASYNC109
        priority: Priority | None = ...,
        deadline: float | None = ...,
    ) -> AsyncStream[BetaRawMessageStreamEvent]: ...

    @overload
    async def create(
        self,
        *,
        max_tokens: int,
        messages: Iterable[BetaMessageParam],
        model: ModelParam,
        stream: bool,
        billing_policy: BetaBillingPolicyParam | Omit | None = ...,
        cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
        compaction: BetaCompactionConfigParam | Omit | None = ...,
        container: message_create_params.Container | Omit | None = ...,
        context_management: BetaContextManagementConfigParam | Omit | None = ...,
        diagnostics: BetaDiagnosticsParam | Omit | None = ...,
        fallback_credit_token: message_create_params.FallbackCreditToken | Omit | None = ...,
        fallbacks: BetaFallbacksParam | Omit | None = ...,
        inference_geo: str | Omit | None = ...,
        mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
        metadata: BetaMetadataParam | Omit = ...,
        output_config: BetaOutputConfigParam | Omit = ...,
        service_tier: Literal["auto", "standard_only"] | Omit = ...,
        speed: Literal["standard", "fast"] | Omit | None = ...,
        stop_sequences: SequenceNotStr[str] | Omit = ...,
        system: str | Iterable[BetaTextBlockParam] | Omit = ...,
        thinking: BetaThinkingConfigParam | Omit = ...,
        thread: BetaMessageThreadParam | Omit | None = ...,
        tool_choice: BetaToolChoiceParam | Omit = ...,
        tools: Iterable[BetaToolLike] | Omit = ...,
        betas: list[AnthropicBetaParam] | Omit = ...,
        user_profile_id: str | Omit = ...,
        workspace_id: str | Omit = ...,
        extra_headers: Headers | None = ...,
        extra_query: Query | None = ...,
        extra_body: Body | None = ...,
        timeout: float | httpx2.Timeout | NotGiven | None = ...,  # noqa: ASYNC109
        priority: Priority | None = ...,
        deadline: float | None = ...,
    ) -> BetaMessage | AsyncStream[BetaRawMessageStreamEvent]: ...

    async def create(self, **kwargs: Any) -> Any:
        """`anthropic.AsyncAnthropic().beta.messages.create`, under the client's limits.

        Returns the SDK's `BetaMessage` (with ``stream=True``, its `AsyncStream` of beta
        events). Extra keyword options: ``priority`` and ``deadline``, as for
        ``messages.create``."""
        kwargs = compress_kwargs(
            self._pipeline.compressor, kwargs
        )  # opt-in: asyncthrift.compression
        if stream_requested(kwargs):
            return await self._open_stream(kwargs)
        p = self._pipeline
        call = p.start("create", kwargs, self._sdks, self._max_retries, shareable=False)
        return await p.run_to_end(call, BETA_CREATE)

    async def _open_stream(self, kwargs: dict[str, Any]) -> AsyncStream[Any]:
        kwargs = dict(kwargs)
        kwargs.pop("stream", None)
        p = self._pipeline
        call = p.start("stream", kwargs, self._sdks, self._max_retries, shareable=False)
        return await open_event_stream(p, call, BETA_STREAM)

    if TYPE_CHECKING:

        def stream(
            self,
            *,
            max_tokens: int,
            messages: Iterable[BetaMessageParam],
            model: ModelParam,
            billing_policy: BetaBillingPolicyParam | Omit | None = ...,
            cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
            compaction: BetaCompactionConfigParam | Omit | None = ...,
            metadata: BetaMetadataParam | Omit = ...,
            output_config: BetaOutputConfigParam | Omit = ...,
            output_format: type[ResponseFormatT] | Omit | None = ...,
            container: message_create_params.Container | Omit | None = ...,
            context_management: BetaContextManagementConfigParam | Omit | None = ...,
            diagnostics: BetaDiagnosticsParam | Omit | None = ...,
            fallback_credit_token: message_create_params.FallbackCreditToken | Omit | None = ...,
            fallbacks: BetaFallbacksParam | Omit | None = ...,
            inference_geo: str | Omit | None = ...,
            mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
            service_tier: Literal["auto", "standard_only"] | Omit = ...,
            speed: Literal["standard", "fast"] | Omit | None = ...,
            stop_sequences: SequenceNotStr[str] | Omit = ...,
            system: str | Iterable[BetaTextBlockParam] | Omit = ...,
            thinking: BetaThinkingConfigParam | Omit = ...,
            thread: BetaMessageThreadParam | Omit | None = ...,
            tool_choice: BetaToolChoiceParam | Omit = ...,
            tools: Iterable[BetaToolLike] | Omit = ...,
            betas: list[AnthropicBetaParam] | Omit = ...,
            user_profile_id: str | Omit = ...,
            workspace_id: str | Omit = ...,
            extra_headers: Headers | None = ...,
            extra_query: Query | None = ...,
            extra_body: Body | None = ...,
            timeout: float | httpx2.Timeout | NotGiven | None = ...,
            priority: Priority | None = ...,
            deadline: float | None = ...,
        ) -> BetaStreamManager[ResponseFormatT]: ...

        async def count_tokens(
            self,
            *,
            messages: Iterable[BetaMessageParam],
            model: ModelParam,
            billing_policy: BetaBillingPolicyParam | Omit | None = ...,
            cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
            compaction: BetaCompactionConfigParam | Omit | None = ...,
            context_management: BetaContextManagementConfigParam | Omit | None = ...,
            mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
            output_config: BetaOutputConfigParam | Omit = ...,
            speed: Literal["standard", "fast"] | Omit | None = ...,
            system: str | Iterable[BetaTextBlockParam] | Omit = ...,
            thinking: BetaThinkingConfigParam | Omit = ...,
            tool_choice: BetaToolChoiceParam | Omit = ...,
            tools: Iterable[BetaToolLike] | Omit = ...,
            betas: list[AnthropicBetaParam] | Omit = ...,
            user_profile_id: str | Omit = ...,
            workspace_id: str | Omit = ...,
            extra_headers: Headers | None = ...,
            extra_query: Query | None = ...,
            extra_body: Body | None = ...,
            timeout: float | httpx2.Timeout | NotGiven | None = ...,  # noqa: ASYNC109
            priority: Priority | None = ...,
            deadline: float | None = ...,
            calibrate: bool = ...,
        ) -> BetaMessageTokensCount: ...

        async def parse(
            self,
            *,
            max_tokens: int,
            messages: Iterable[BetaMessageParam],
            model: ModelParam,
            billing_policy: BetaBillingPolicyParam | Omit | None = ...,
            cache_control: BetaCacheControlEphemeralParam | Omit | None = ...,
            compaction: BetaCompactionConfigParam | Omit | None = ...,
            container: message_create_params.Container | Omit | None = ...,
            context_management: BetaContextManagementConfigParam | Omit | None = ...,
            diagnostics: BetaDiagnosticsParam | Omit | None = ...,
            fallback_credit_token: message_create_params.FallbackCreditToken | Omit | None = ...,
            fallbacks: BetaFallbacksParam | Omit | None = ...,
            inference_geo: str | Omit | None = ...,
            mcp_servers: Iterable[BetaRequestMCPServerURLDefinitionParam] | Omit = ...,
            metadata: BetaMetadataParam | Omit = ...,
            output_config: BetaOutputConfigParam | Omit = ...,
            output_format: type[ResponseFormatT] | Omit | None = ...,
            service_tier: Literal["auto", "standard_only"] | Omit = ...,
            speed: Literal["standard", "fast"] | Omit | None = ...,
            stop_sequences: SequenceNotStr[str] | Omit = ...,
            system: str | Iterable[BetaTextBlockParam] | Omit = ...,
            thinking: BetaThinkingConfigParam | Omit = ...,
            thread: BetaMessageThreadParam | Omit | None = ...,
            tool_choice: BetaToolChoiceParam | Omit = ...,
            tools: Iterable[BetaToolLike] | Omit = ...,
            betas: list[AnthropicBetaParam] | Omit = ...,
            user_profile_id: str | Omit = ...,
            workspace_id: str | Omit = ...,
            extra_headers: Headers | None = ...,
            extra_query: Query | None = ...,
            extra_body: Body | None = ...,
            timeout: float | httpx2.Timeout | NotGiven | None = ...,  # noqa: ASYNC109
            priority: Priority | None = ...,
            deadline: float | None = ...,
        ) -> ParsedBetaMessage[ResponseFormatT]: ...

    else:

        def stream(self, **kwargs: Any) -> BetaStreamManager[Any]:
            """`beta.messages.stream(...)` under the client's limits, with the SDK's
            `BetaAsyncMessageStream` API."""
            return BetaStreamManager(self._open_stream, kwargs)

        async def count_tokens(self, **kwargs: Any) -> BetaMessageTokensCount:
            """`beta.messages.count_tokens(...)`, on the count_tokens request budget."""
            calibrate, kwargs = split_count_kwargs(kwargs)
            p = self._pipeline
            call = p.start(
                COUNT_TOKENS_CLASS, kwargs, self._sdks, self._max_retries, shareable=False
            )
            counted: BetaMessageTokensCount = await count_tokens(
                p, call, calibrate, resource=BETA_MESSAGES
            )
            return counted

        async def parse(self, **kwargs: Any) -> Any:
            """`beta.messages.parse(...)`: ``create`` with ``output_format`` merged into
            ``output_config``, scheduled, its answer the SDK's `ParsedBetaMessage`."""
            output_format, kwargs = parse_kwargs(kwargs)
            return parsed_beta(await self.create(**kwargs), output_format)

    @property
    def batches(self) -> Batches:
        """``client.batches`` on the beta batch endpoints: the same request budget, retries
        and ``stats()`` counters; `Batches.create` splits as many batches as the API's
        per-batch limits need (a list). Answers are the SDK's ``Beta*`` batch types."""
        return self._batches()

    @property
    def with_raw_response(self) -> RawMessages[BetaMessage, BetaMessageTokensCount]:
        """``create``/``count_tokens`` answering the SDK's raw response, scheduled."""
        return RawMessages(
            self._pipeline,
            self._sdks,
            self._max_retries,
            create=BETA_RAW_CREATE,
            stream=BETA_STREAM,
            resource=BETA_MESSAGES,
        )

    @property
    def with_streaming_response(self) -> StreamingMessages[BetaMessage, BetaMessageTokensCount]:
        """``async with ...with_streaming_response.create(...) as response``, scheduled."""
        return StreamingMessages(self.with_raw_response)

    @property
    def tool_runner(self) -> Any:
        """The SDK's ``beta.messages.tool_runner`` (first key), unscheduled: it drives the
        SDK client itself."""
        return self._sdks[0].beta.messages.tool_runner

    @property
    def thread(self) -> Any:
        """The SDK's ``beta.messages.thread`` (first key), unscheduled."""
        return self._sdks[0].beta.messages.thread
