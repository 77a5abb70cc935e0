"""How the forwarding routes (`_forward`, `_forward_stream`) send ``POST /v1/messages`` for
one SDK client.

On the client's own HTTP client (httpx2, whatever transport it was given), or, when that
is the SDK's aiohttp client (`anthropic.DefaultAioHttpClient`, the library's default when
aiohttp is installed), straight on an aiohttp session of the endpoint's own: without
httpx2's request and response models a send costs about half the client-side CPU (0.17
against 0.36 ms per request measured against the mock, bench/RESULTS.md "Gateway
pass-through"). The two differ only in how a request goes out and its body is read
(`_Reply`); the URL and query, the headers left where the pipeline's header hook leaves
them (`HEADERS`, so the budget resyncs and retries read ``retry-after``), and failures as
the SDK's exceptions, made as the SDK makes them, are one code path (`Endpoint.open`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import anthropic
import httpx2
import orjson

from ..core._sdk import http_client, status_error
from ._departure import departing_session
from ._keys import HEADERS

try:
    import aiohttp
except ImportError:  # pragma: no cover - aiohttp is in the gateway's and fast extras
    aiohttp = None  # type: ignore[assignment]

__all__ = ["Endpoint", "Reply"]


class Reply(Protocol):
    """An upstream response whose headers have come and whose body has not been read."""

    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes:
        """The whole body (then closed)."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it comes, decoded of any content encoding (a second call goes on
        where the first stopped)."""
        ...

    async def close(self) -> None: ...


class Endpoint:
    """Where one SDK client sends a forwarded call, with the headers it always sends; and,
    for an aiohttp client, the session that sends them (`aclose` closes it)."""

    __slots__ = ("_session", "direct", "headers", "timeout", "url")

    def __init__(self, sdk: anthropic.AsyncAnthropic, *, beta: bool) -> None:
        path = "/v1/messages?beta=true" if beta else "/v1/messages"
        self.url = str(sdk.base_url).rstrip("/") + path
        given = sdk.default_headers.items()  # an `Omit` value: a header the SDK leaves out
        self.headers = {k: v for k, v in given if isinstance(v, str)}
        self.headers["x-stainless-retry-count"] = "0"
        self.timeout = sdk.timeout
        sends = http_client(sdk)
        self.direct = aiohttp is not None and isinstance(sends, anthropic.DefaultAioHttpClient)
        self._session: Any = None

    async def post(
        self,
        sdk: anthropic.AsyncAnthropic,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, Any] | None,
    ) -> tuple[bytes, str | None]:
        """(the answer's bytes, its ``request-id``); the SDK's error for an error status,
        a timeout or a failed connection."""
        reply = await self.open(sdk, body, headers, query)
        content = await self.read(reply)
        return content, reply.headers.get("request-id")

    async def open(
        self,
        sdk: anthropic.AsyncAnthropic,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, Any] | None,
    ) -> Reply:
        """The response once its headers have come, a success (its body unread: `read`
        it, or read its `Reply.chunks` and close it); the SDK's error for an error status
        (its body read), a timeout or a failed connection."""
        url = self.url
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
        try:
            if self.direct:
                reply = await self._send_aiohttp(url, body, headers)
                box = HEADERS.get()  # httpx2's response hook fills it on the other sender
                if box is not None:
                    box.append(reply.headers)
            else:
                reply = await _send_httpx(http_client(sdk), url, body, headers, self.timeout)
            if 200 <= reply.status < 300:
                return reply
            content = await reply.read()
        except Exception as exc:
            raise failure(exc, url) from exc
        raise _status_error(sdk, reply, content, url)

    async def read(self, reply: Reply) -> bytes:
        """`reply`'s whole body; the SDK's error when reading it fails."""
        try:
            return await reply.read()
        except Exception as exc:
            raise failure(exc, self.url) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _send_aiohttp(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        session = self._session
        if session is None:
            session = self._session = _session(self.timeout)
        response = await session.post(url, data=body, headers=headers)
        return _AiohttpReply(response)


def failure(exc: Exception, url: str) -> anthropic.APIConnectionError:
    """What a failed send or read raises: a timeout (httpx2's or aiohttp's, which are
    `TimeoutError`s) as `APITimeoutError`, anything else as `APIConnectionError`, as the
    SDK maps them."""
    request = httpx2.Request("POST", url)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return anthropic.APITimeoutError(request=request)
    return anthropic.APIConnectionError(request=request)


async def _send_httpx(
    http: httpx2.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    limits: float | httpx2.Timeout | None,
) -> Reply:
    """Sent on the SDK client's httpx2 client (its response hook fills `HEADERS`)."""
    request = http.build_request("POST", url, content=body, headers=headers, timeout=limits)
    return _HttpxReply(await http.send(request, stream=True))


class _HttpxReply:
    __slots__ = ("_chunks", "_response", "headers", "status")

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self._chunks: AsyncIterator[bytes] | None = None

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        finally:
            await self._response.aclose()

    def chunks(self) -> AsyncIterator[bytes]:
        if self._chunks is None:  # httpx2 streams a body once: one iterator, resumed
            self._chunks = self._response.aiter_bytes()
        return self._chunks

    async def close(self) -> None:
        await self._response.aclose()


class _AiohttpReply:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            content: bytes = await self._response.read()
            return content
        finally:
            self._response.release()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()  # type: ignore[no-any-return]

    async def close(self) -> None:
        self._response.close()  # a stream left unread: the connection is not reused


def _session(timeout: float | httpx2.Timeout | None) -> Any:
    """An aiohttp session with the SDK client's timeouts (connect, and between reads),
    saying when a request is written (`_departure.departing_session`)."""
    assert aiohttp is not None
    if isinstance(timeout, httpx2.Timeout):
        connect, read = timeout.connect, timeout.read
    else:
        connect = read = timeout
    return departing_session(  # its writes told to the budget, as the SDK's client's are
        connector=aiohttp.TCPConnector(limit=1000),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
    )


def _status_error(
    sdk: anthropic.AsyncAnthropic, reply: Reply, content: bytes, url: str
) -> anthropic.APIStatusError:
    """The SDK's error class for an error status, with the message and body it would give."""
    request = httpx2.Request("POST", url)
    response = httpx2.Response(
        reply.status, headers=list(reply.headers.items()), content=content, request=request
    )
    text = content.decode("utf-8", "replace").strip()
    body: object = text
    try:
        body = orjson.loads(text)
        message = f"Error code: {reply.status} - {body}"
    except orjson.JSONDecodeError:
        message = text or f"Error code: {reply.status}"
    return status_error(sdk, message, body, response)
