"""`pipeline._departure` on aiohttp: a session made by `departing_session` (the gateway's) or
the SDK's aiohttp client made by `aiohttp_client` (the library's default) says once, when a
request's body has been handed to the socket and before its answer is read, that it is
written; a request no attempt waits for says nothing. Against a loopback server that holds
its answer until the word has come (no timing is measured: a missing word fails by the
guard's timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asyncthrift.pipeline._departure import (
    DEPARTURE,
    Departure,
    aiohttp_client,
    departing_session,
)

aiohttp = pytest.importorskip("aiohttp")

#: A failure guard, not a measurement: the server waits this long at most for the word.
GUARD_S = 30.0
BODY = b'{"model": "m", "max_tokens": 1}' * 2_000  # 62 kB: more than one chunk


class HeldAnswers:
    """A loopback HTTP/1.1 server that reads each request whole, then answers only once
    `release` is set (or says 504 when the guard runs out)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.bodies: list[int] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/messages"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.bodies.append(length)
            try:
                await asyncio.wait_for(self.release.wait(), GUARD_S)
                status = b"200 OK"
            except TimeoutError:
                status = b"504 Gateway Timeout"
            self.release.clear()
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()


@pytest.fixture
async def held() -> AsyncIterator[HeldAnswers]:
    answers = HeldAnswers()
    answers.server = await asyncio.start_server(answers.serve, "127.0.0.1", 0)
    try:
        yield answers
    finally:
        answers.server.close()


def _releasing(held: HeldAnswers, words: list[int]) -> Departure:
    def said() -> None:
        words.append(len(held.bodies))  # how many bodies the server had read by then
        held.release.set()

    return Departure(said)


async def test_a_departing_session_says_written_once_before_the_answer(
    held: HeldAnswers,
) -> None:
    words: list[int] = []
    async with departing_session() as session:
        token = DEPARTURE.set(_releasing(held, words))
        try:
            async with session.post(held.url, data=BODY) as response:
                assert response.status == 200  # the answer came only after the word
                assert await response.read() == b"{}"
        finally:
            DEPARTURE.reset(token)
        assert words == [0] or words == [1]  # once; the server may not have read it yet
        held.release.set()  # no attempt waits for this one: it says nothing
        async with session.post(held.url, data=BODY) as response:
            assert response.status == 200
    assert len(words) == 1
    assert held.bodies == [len(BODY), len(BODY)]


async def test_the_sdks_aiohttp_client_made_here_says_written(held: HeldAnswers) -> None:
    http = aiohttp_client()
    assert http is not None
    words: list[int] = []
    token = DEPARTURE.set(_releasing(held, words))
    try:
        response = await http.post(held.url, content=BODY)
    finally:
        DEPARTURE.reset(token)
    assert response.status_code == 200
    assert len(words) == 1
    await http.aclose()
