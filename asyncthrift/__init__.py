"""asyncthrift: an asyncio Anthropic client that never earns a 429 and never pays twice.

async with Thrift(limits="tier2") as client:
    message = await client.messages.create(model=..., max_tokens=..., messages=[...])
"""

from __future__ import annotations

from . import errors
from .bucket import Cost, TokenBucket
from .budget import LocalBudget
from .client import KeyConfig, Messages, Thrift
from .errors import (
    BudgetExceeded,
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    NoKeysLeft,
    QueueFull,
    RequestTooLarge,
    ThriftError,
)
from .limits import PRESETS, Limits, model_class
from .retry import RetryPolicy
from .stats import Stats

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BudgetExceeded",
    "ClientClosed",
    "Cost",
    "DeadlineExceeded",
    "InvalidArgument",
    "KeyConfig",
    "Limits",
    "LocalBudget",
    "Messages",
    "NoKeysLeft",
    "QueueFull",
    "RequestTooLarge",
    "RetryPolicy",
    "Stats",
    "Thrift",
    "ThriftError",
    "TokenBucket",
    "__version__",
    "errors",
    "model_class",
]
