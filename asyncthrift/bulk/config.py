"""`BulkConfig`: everything one bulk run needs, as the command line or a caller gives it.

Apart from the runner so that the command line (`cli`), the batch mode and code calling
`run_bulk` can build and read a configuration without the machinery that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from ..scheduling.limits import LimitsSpec

__all__ = ["BulkConfig"]


@dataclass(frozen=True, slots=True)
class BulkConfig:
    """Everything one run needs; `cli.run_command` builds it from the command line."""

    input: Path
    output: Path
    api_key: str | None = None
    base_url: str | None = None
    limits: LimitsSpec = None
    cache: str | None = None
    max_in_flight: int = 256
    mock: bool = False
    """Serve the run from an in-process `MockServer` enforcing the same limits."""
    mock_latency: float = 0.2
    quiet: bool = False
    progress_interval: float | None = None
    handle_signals: bool = True
    thrift_options: dict[str, Any] = field(default_factory=dict)
    retry_errored: bool = False
    """Send again the ids whose recorded result is errored, expired or canceled."""
    api_key_env: str | None = None
    """Where the key came from, for the message when the API refuses it."""
    batch: str | None = None
    """``"on"``: send through the Message Batches API (half price); ``"auto"``: do so when
    the input has at least `batch_threshold` lines and none is ``interactive``."""
    batch_size: int = 100_000
    """Requests per batch (at most the API's 100,000; fewer if 256 MB is reached first)."""
    batch_poll: float = 5.0
    """First interval between polls of open batches; it grows 1.5x up to `batch_poll_max`
    while nothing ends, and starts again when one does."""
    batch_poll_max: float = 60.0
    batch_grace: float = 30.0
    """How long after an unconfirmed create a batch may still appear in the list."""
    batch_threshold: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.max_in_flight, bool) or self.max_in_flight < 1:
            raise InvalidArgument(f"max_in_flight must be an int >= 1, got {self.max_in_flight!r}")
