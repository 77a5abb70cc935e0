"""Pytest fixtures for a real redis-server on loopback (a plugin registered by
``tests/conftest.py``).

Without ``redis-server`` on PATH the Redis tests skip locally but FAIL under CI (``CI`` set
to anything but "", "0" or "false"), so a CI image missing the server cannot pass silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.redis_server import INSTALL_HINT, RedisServer, find_redis_server


def in_ci() -> bool:
    """Whether the CI environment variable asks for strictness."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_redis_server() -> str:
    """The redis-server path; otherwise fail under CI, skip elsewhere."""
    exe = find_redis_server()
    if exe is None:
        if in_ci():
            pytest.fail(f"{INSTALL_HINT} (CI is set: the Redis tests must not skip)")
        pytest.skip(INSTALL_HINT)
    return exe


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests isolate themselves by namespace)."""
    with RedisServer(require_redis_server()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared session server, restarted if a test stopped it."""
    if not redis_server.running:
        redis_server.start()
    return redis_server.url


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for this test alone: for tests that kill or restart it."""
    with RedisServer(require_redis_server()) as server:
        yield server


@pytest.fixture
def redis_namespace() -> str:
    """A namespace no other test uses, so tests sharing a server never see each other."""
    return f"t-{uuid.uuid4().hex[:12]}"
