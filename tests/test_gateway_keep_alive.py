"""A replica keeps an idle client connection open longer than a load balancer's idle
timeout (`gateway.serve.KEEP_ALIVE`), so the balancer's next request on a connection it
pooled does not race the replica closing it.

A real gateway process on loopback; one raw HTTP/1.1 connection, two requests 7 s apart (a
wall-clock pause, not a threshold: uvicorn's default closes the connection after 5 s idle,
and the second request then gets nothing back).
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from asyncthrift.gateway.serve import KEEP_ALIVE
from asyncthrift.mock import spawn_mock_process
from tests.gateway_process import spawn_gateway

IDLE = 7.0


def _get(sock: socket.socket, host: str) -> bytes:
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            return got  # closed by the server
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_an_idle_connection_outlives_a_balancers_idle_timeout() -> None:
    assert KEEP_ALIVE > 60  # nginx's and an ALB's idle timeouts: 60 s
    with spawn_mock_process() as upstream, spawn_gateway(upstream) as gw:
        parts = urlsplit(gw.url)
        assert parts.hostname is not None and parts.port is not None
        with socket.create_connection((parts.hostname, parts.port), timeout=10.0) as sock:
            first = _get(sock, parts.netloc)
            assert first.startswith(b"HTTP/1.1 200")
            time.sleep(IDLE)
            second = _get(sock, parts.netloc)
            assert second.startswith(b"HTTP/1.1 200"), second
