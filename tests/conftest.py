"""Shared test setup: the real-redis fixtures plugin, and one event-loop workaround."""

from __future__ import annotations

import asyncio

pytest_plugins = ["tests.conftest_redis"]

# pytest-asyncio 1.x on Python 3.11: the first async test that runs after a sync test calls
# asyncio.get_event_loop() with no loop set, which makes (and never closes) a loop; with
# warnings as errors its ResourceWarning fails a test. Marking "no current loop" avoids it.
asyncio.set_event_loop(None)
