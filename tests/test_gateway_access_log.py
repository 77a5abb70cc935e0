"""The access line's own handler (`AccessLineHandler`): one JSON object per request, with
the strings that can carry a request's text redacted, and the line still JSON whatever the
configured keys look like."""

from __future__ import annotations

import io
import logging

import orjson
from starlette.types import Message, Receive, Scope, Send

from asyncthrift.gateway.access_log import AccessLineHandler, AccessLog, fields_of


async def test_a_key_in_a_path_never_reaches_the_line_and_the_line_stays_json() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.gateway.access")
    logger.handlers[:] = [AccessLineHandler(stream, secrets=["k", "team-secret-1"])]
    logger.propagate, logger.level = False, logging.INFO

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        fields_of(scope).update(client="ci", lane="batch", outcome=404, input_tokens=0)
        headers = [(b"request-id", b"req_1")]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/v1/team-secret-1/sk-ant-api03-abcdef"}
    await AccessLog(app, logger)(scope, receive, send)
    line = orjson.loads(stream.getvalue())
    assert "team-secret-1" not in stream.getvalue() and "api03-abcdef" not in stream.getvalue()
    assert line["status"] == 404 and line["input_tokens"] == 0  # keys intact despite "k"
    assert line["client"] == "ci" and line["request_id"] == "req_1"
    assert line["path"].startswith("/v1/<redacted>/")
