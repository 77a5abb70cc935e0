"""The gateway's coalesced writes (`asyncthrift.gateway._coalesce`): what one turn of the
event loop writes on a connection goes out as one write, in order; closing sends what is
pending first; nothing is written to a transport that is already closing."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncthrift.gateway._coalesce import CoalescedWrites


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing or self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def coalesced(recorder: Recorder) -> CoalescedWrites:
    return CoalescedWrites(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_one_turns_writes_go_out_as_one_in_order() -> None:
    recorder = Recorder()
    writes = coalesced(recorder)
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    writes.write(b"")
    writes.write(b'{"a":1}')
    assert recorder.writes == []  # not before the turn ends
    await asyncio.sleep(0)
    assert recorder.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a":1}']
    writes.write(b"next")  # a later turn: a write of its own
    await asyncio.sleep(0)
    assert recorder.writes[1:] == [b"next"]
    assert writes.get_extra_info("peername") == "info:peername"


async def test_closing_sends_what_is_pending_first() -> None:
    recorder = Recorder()
    writes = coalesced(recorder)
    writes.write(b"last words")
    writes.close()
    assert recorder.writes == [b"last words"] and recorder.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert recorder.writes == [b"last words"]


async def test_nothing_is_written_once_the_peer_is_gone() -> None:
    recorder = Recorder()
    writes = coalesced(recorder)
    writes.write(b"too late")
    recorder.closing = True
    await asyncio.sleep(0)
    assert recorder.writes == []
