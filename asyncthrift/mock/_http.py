"""A minimal HTTP/1.1 server on `asyncio.Protocol`, just enough for the Anthropic SDK.

Why not aiohttp or starlette: the runtime dependencies stay at anthropic, orjson and
xxhash, and a protocol-level server costs a few microseconds per request, so the mock is
never the bottleneck of a benchmark. What it supports:

- keep-alive (HTTP/1.1 default, ``Connection: close`` honoured), pipelined requests
  answered in order (one handler at a time per connection);
- request bodies with ``Content-Length`` (``Expect: 100-continue`` answered); chunked
  request bodies are refused with 501 (the SDK never sends them);
- responses with ``Content-Length``, or streamed with ``Transfer-Encoding: chunked``
  (server-sent events), with write flow control;
- a handler may return None to drop the connection without any response (fault injection);
- a lost (or half-closed) connection: a handler still computing its answer is cancelled
  (`HttpServer(stop_abandoned=True)`, so an abandoned answer stops generating and settles
  what it owes) or left to finish, its `Request.gone` set, its response never written
  (``stop_abandoned=False``); a stream stops at its next write, as a real server notices a
  gone client only when it writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Final, cast

from ._http_types import (
    ErrorFactory,
    Handler,
    Request,
    Response,
    StreamResponse,
    default_error,
    response_head,
)

__all__ = ["HttpServer", "Request", "Response", "StreamResponse"]

log = logging.getLogger("asyncthrift.mock")

_MAX_HEAD: Final = 64 * 1024


class _Connection(asyncio.Protocol):
    """One client connection: parse, dispatch one request at a time, write back."""

    __slots__ = (
        "_buf",
        "_closed",
        "_continue_sent",
        "_current",
        "_drain",
        "_paused",
        "_pending",
        "_server",
        "_streaming",
        "_task",
        "_transport",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._pending: tuple[Request, int] | None = None  # head parsed, body incomplete
        self._continue_sent = False
        self._closed = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._current: Request | None = None  # the request being served
        self._streaming = False  # its response is a stream being written

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same API.
        self._transport = cast(asyncio.Transport, transport)
        self._server._connections.add(self)
        self._server.opened += 1

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._task is None:
            self._next()

    def eof_received(self) -> bool:
        # A client that half-closes has gone away (HTTP clients never half-close to await a
        # response): returning False closes the transport, and connection_lost treats the
        # answer as abandoned, like a dropped connection.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._connections.discard(self)
        if self._current is not None:
            self._current.gone = True
        # A stream notices at its next write (`_stream` checks `_closed`); a handler still
        # computing its answer stops now or finishes unheard, as the server is set.
        if self._task is not None and not self._streaming and self._server.stop_abandoned:
            self._task.cancel()
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # -- internals ---------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _drained(self) -> None:
        if self._paused and not self._closed:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        """A protocol-level error: answer it and close (the stream can't be resynced)."""
        assert self._transport is not None
        resp = self._server.error_response(status, message)
        headers = [*resp.headers, ("connection", "close")]
        self._transport.write(
            response_head(
                status,
                headers,
                f"content-type: {resp.content_type}\r\ncontent-length: {len(resp.body)}\r\n",
            )
            + resp.body
        )
        self._buf.clear()
        self._transport.close()

    def _parse_head(self) -> tuple[Request, int] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail(431, "request headers too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        del buf[: end + 4]
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, "malformed request line")
            return None
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400, "malformed header line")
                return None
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._fail(501, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._fail(400, "invalid Content-Length")
            return None
        limit = self._server.body_limit(target)
        if length > limit:
            self._fail(413, f"request body exceeds {limit} bytes")
            return None
        conn = headers.get("connection", "").lower()
        keep_alive = "keep-alive" in conn if version == "HTTP/1.0" else "close" not in conn
        return Request(method, target, headers, b"", keep_alive), length

    def _next(self) -> None:
        """Start the next complete request in the buffer, if any and nothing is running."""
        if self._closed or self._transport is None or self._transport.is_closing():
            return
        if self._pending is None:
            if not self._buf:
                return
            self._pending = self._parse_head()
            if self._pending is None:
                return
        request, length = self._pending
        if len(self._buf) < length:
            if not self._continue_sent and request.headers.get("expect", "") == "100-continue":
                self._continue_sent = True
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        request.body = bytes(self._buf[:length])
        del self._buf[:length]
        self._pending = None
        self._continue_sent = False
        self._task = self._server.spawn(self._serve(request))

    async def _serve(self, request: Request) -> None:
        transport = self._transport
        assert transport is not None
        result: Response | StreamResponse | None = None
        self._current = request
        try:
            try:
                result = await self._server.handler(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mock handler failed on %s %s", request.method, request.target)
                result = self._server.error_response(500, "internal error in the mock server")
            if self._closed:
                if isinstance(result, StreamResponse):
                    await result.body.aclose()
                return
            if result is None:
                transport.close()  # drop: no response at all
                return
            close = not request.keep_alive
            extra = "connection: close\r\n" if close else ""
            if isinstance(result, Response):
                extra += (
                    f"content-type: {result.content_type}\r\ncontent-length: {len(result.body)}\r\n"
                )
                transport.write(response_head(result.status, result.headers, extra) + result.body)
            else:
                self._streaming = True
                try:
                    await self._stream(result, extra)
                except Exception:
                    # Mid-body: no way to send an error any more; the client sees a cut stream.
                    log.exception("mock stream failed on %s %s", request.method, request.target)
                    transport.abort()
                    return
            if close:
                transport.close()
        finally:
            self._task = None
            self._current = None
            self._streaming = False
            if isinstance(result, StreamResponse) and result.on_close is not None:
                result.on_close()
        if not self._closed:
            self._next()

    async def _stream(self, result: StreamResponse, extra: str) -> None:
        transport = self._transport
        assert transport is not None
        extra += f"content-type: {result.content_type}\r\ncache-control: no-cache\r\n"
        extra += "transfer-encoding: chunked\r\n"
        head = response_head(result.status, result.headers, extra)
        if result.prefix:
            head += b"%x\r\n%b\r\n" % (len(result.prefix), result.prefix)
        transport.write(head)
        gen = result.body
        try:
            async for chunk in gen:
                if self._closed:
                    return
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self._paused:
                        await self._drained()
            if not self._closed:
                transport.write(b"0\r\n\r\n")
        finally:
            await gen.aclose()


class HttpServer:
    """Serves `handler` on a TCP socket; `close()` ends every connection and handler."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = 32 * 1024 * 1024,
        error_response: ErrorFactory = default_error,
        large_body_prefix: str | None = None,
        large_body: int = 0,
        stop_abandoned: bool = True,
    ) -> None:
        self.handler = handler
        # a client gone while its handler runs: cancel the handler (True) or let it finish
        self.stop_abandoned = stop_abandoned
        self.max_body = max_body
        # Paths under this prefix (the batch endpoints) may send up to `large_body` bytes.
        self.large_body_prefix = large_body_prefix
        self.large_body = large_body
        self.error_response = error_response
        self._connections: set[_Connection] = set()
        self.opened = 0  # connections accepted since start: keep-alive keeps this low
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and listen; returns the bound (host, port)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), host, port, backlog=2048, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    def body_limit(self, target: str) -> int:
        """The largest body accepted for a request to `target`."""
        prefix = self.large_body_prefix
        if prefix is not None and target.startswith(prefix):
            return max(self.max_body, self.large_body)
        return self.max_body

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        """Stop listening, close every connection, and wait for every handler to finish."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Let the transports run their connection_lost callbacks before the loop may close.
        await asyncio.sleep(0)
