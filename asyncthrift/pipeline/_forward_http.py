"""How the forwarding route (`_forward`) sends ``POST /v1/messages`` for one SDK client.

On the client's own HTTP client (httpx2, whatever transport it was given), or, when that
is the SDK's aiohttp client (`anthropic.DefaultAioHttpClient`, the library's default when
aiohttp is installed), straight on an aiohttp session of the endpoint's own: without
httpx2's request and response models a send costs about half the client-side CPU (0.17
against 0.36 ms per request measured against the mock, bench/RESULTS.md "Gateway
pass-through"). Either way the response's headers are left where the pipeline's header
hook leaves them (`HEADERS`, so the budget resyncs and retries read ``retry-after``), and
failures are the SDK's exceptions, made as the SDK makes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import anthropic
import httpx2
import orjson

from ..core._sdk import http_client, status_error
from ._keys import HEADERS

try:
    import aiohttp
except ImportError:  # pragma: no cover - aiohttp is in the gateway's and fast extras
    aiohttp = None  # type: ignore[assignment]

__all__ = ["Endpoint"]


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
        if self.direct:
            return await self._post_aiohttp(sdk, body, headers, query)
        return await self._post_httpx(sdk, body, headers, query)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post_httpx(
        self,
        sdk: anthropic.AsyncAnthropic,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, Any] | None,
    ) -> tuple[bytes, str | None]:
        http = http_client(sdk)  # its response hook fills `HEADERS`
        request = http.build_request(
            "POST", self.url, content=body, headers=headers, params=query, timeout=self.timeout
        )
        try:
            response = await http.send(request)
        except httpx2.TimeoutException as exc:  # as the SDK maps them
            raise anthropic.APITimeoutError(request=request) from exc
        except Exception as exc:
            raise anthropic.APIConnectionError(request=request) from exc
        content = response.content
        if not response.is_success:
            raise _status_error(sdk, response, content)
        return content, response.headers.get("request-id")

    async def _post_aiohttp(
        self,
        sdk: anthropic.AsyncAnthropic,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, Any] | None,
    ) -> tuple[bytes, str | None]:
        url = self.url
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
        session = self._session
        if session is None:
            session = self._session = _session(self.timeout)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                status = response.status
                received = response.headers
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors
            raise anthropic.APITimeoutError(request=httpx2.Request("POST", url)) from exc
        except Exception as exc:
            raise anthropic.APIConnectionError(request=httpx2.Request("POST", url)) from exc
        box = HEADERS.get()
        if box is not None:
            box.append(received)
        if not 200 <= status < 300:
            request = httpx2.Request("POST", url)
            reply = httpx2.Response(
                status, headers=list(received.items()), content=content, request=request
            )
            raise _status_error(sdk, reply, content)
        return content, received.get("request-id")


def _session(timeout: float | httpx2.Timeout | None) -> Any:
    """An aiohttp session with the SDK client's timeouts (connect, and between reads)."""
    assert aiohttp is not None
    if isinstance(timeout, httpx2.Timeout):
        connect, read = timeout.connect, timeout.read
    else:
        connect = read = timeout
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
    )


def _status_error(
    sdk: anthropic.AsyncAnthropic, response: httpx2.Response, content: bytes
) -> anthropic.APIStatusError:
    """The SDK's error class for an error status, with the message and body it would give."""
    text = content.decode("utf-8", "replace").strip()
    body: object = text
    try:
        body = orjson.loads(text)
        message = f"Error code: {response.status_code} - {body}"
    except orjson.JSONDecodeError:
        message = text or f"Error code: {response.status_code}"
    return status_error(sdk, message, body, response)
