"""The least a Python gateway can add: a reverse proxy that passes bytes on and does nothing else.

    python bench/gateway_passthrough.py --port PORT --upstream URL

`bench/bench_gateway.py` measures it beside ``asyncthrift serve`` with nothing binding, on
the same server stack (uvicorn on uvloop; an aiohttp client with keep-alive to the upstream): the
latency and CPU of one more process hop on this machine, which no gateway avoids. What
``asyncthrift serve`` adds beyond it is its own work (parsing, authentication, scheduling,
the SDK's request and response models). ``POST`` bodies, the key and version headers, and
the answer's status, body, ``content-type`` and ``request-id`` pass unchanged;
``GET /healthz`` answers 200.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]
PASSED = (b"x-api-key", b"authorization", b"anthropic-version", b"anthropic-beta", b"content-type")


def app_for(upstream: str) -> Any:
    base = upstream.rstrip("/")
    client: aiohttp.ClientSession | None = None

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    nonlocal client
                    client = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0),
                        timeout=aiohttp.ClientTimeout(total=600.0),
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if client is not None:
                        await client.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in PASSED}
        assert client is not None
        async with client.request(
            scope["method"], base + scope["path"], data=body, headers=headers
        ) as resp:
            content = await resp.read()
            out = [
                (k.lower().encode(), v.encode())
                for k, v in resp.headers.items()
                if k.lower() in ("content-type", "request-id")
            ]
            status = resp.status
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        app_for(args.upstream),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        server_header=False,
    )


if __name__ == "__main__":
    main()
