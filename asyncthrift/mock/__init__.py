"""A faithful local Anthropic Messages API server, for tests, the demo and benchmarks.

Drive the real SDK against it over loopback HTTP::

    async with MockServer(limits=Limits(rpm=50, itpm=30_000, otpm=8_000, period=6)) as mock:
        client = anthropic.AsyncAnthropic(api_key="test", base_url=mock.base_url, max_retries=0)
        ...
        assert mock.counters.rate_limited == 0

`spawn_mock_process` runs one in a child process (so a benchmark's client does not share a
CPU core with it); ``python -m asyncthrift.mock`` runs one from the command line.
"""

from ._config import Faults, MockConfig
from ._counters import Admission, MockCounters
from ._process import remote_reset, remote_stats, spawn_mock_process
from ._server import MockServer
from ._tokenizer import count_text

__all__ = [
    "Admission",
    "Faults",
    "MockConfig",
    "MockCounters",
    "MockServer",
    "count_text",
    "remote_reset",
    "remote_stats",
    "spawn_mock_process",
]
