"""The SDK's resource objects with their Messages calls swapped for scheduled ones.

``client.beta``, ``client.with_raw_response``, ``client.with_streaming_response`` and
``client.beta.with_raw_response`` are what the SDK's are, attribute for attribute
(`Passthrough`: every name the SDK's object has, unscheduled, on the first key), except
``messages`` (and ``beta``), which go through the scheduler. Why a module of its own: these
are thin shells that only choose which attribute is scheduled; the facades that schedule
(`_messages`, `_beta`, `_raw_responses`) and the client (`thrift`) hold the behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from anthropic.types.beta import BetaMessage, BetaMessageTokensCount

from ..core._sdk import Passthrough
from ._beta import BetaMessages
from ._raw_responses import RawMessages, StreamingMessages

if TYPE_CHECKING:
    from anthropic.resources.beta import AsyncBeta

__all__ = ["Beta", "ClientView", "View"]

_T = TypeVar("_T")
_MessagesT = TypeVar("_MessagesT")
_BetaT = TypeVar("_BetaT")


class View(Passthrough, Generic[_T]):
    """The SDK's resource `sdk` with its ``messages`` replaced by a scheduled one: what
    ``client.beta.with_raw_response`` and ``...with_streaming_response`` are. Every other
    attribute is the SDK's, unscheduled."""

    __slots__ = ("messages",)

    def __init__(self, messages: _T, sdk: object) -> None:
        super().__init__(sdk)
        self.messages = messages


class Beta(Passthrough):
    """`client.beta`: ``messages`` scheduled (`BetaMessages`); every other beta resource
    (``files``, ``models``, ``skills``, ...) is the SDK's own, on the first key, unscheduled."""

    __slots__ = ("messages",)

    def __init__(self, messages: BetaMessages, sdk: AsyncBeta) -> None:
        super().__init__(sdk)
        self.messages = messages

    @property
    def with_raw_response(self) -> View[RawMessages[BetaMessage, BetaMessageTokensCount]]:
        return View(self.messages.with_raw_response, self._sdk.with_raw_response)

    @property
    def with_streaming_response(
        self,
    ) -> View[StreamingMessages[BetaMessage, BetaMessageTokensCount]]:
        return View(self.messages.with_streaming_response, self._sdk.with_streaming_response)


class ClientView(Passthrough, Generic[_MessagesT, _BetaT]):
    """``client.with_raw_response`` / ``client.with_streaming_response``: ``messages`` and
    ``beta`` scheduled; every other attribute is the SDK's view (first key), unscheduled."""

    __slots__ = ("beta", "messages")

    def __init__(self, messages: _MessagesT, beta: _BetaT, sdk: object) -> None:
        super().__init__(sdk)
        self.messages = messages
        self.beta = beta
