"""asyncthrift: an asyncio Anthropic client that never earns a 429 and never pays twice.

async with Thrift(limits="tier2") as client:
    message = await client.messages.create(model=..., max_tokens=..., messages=[...])
"""

from __future__ import annotations

from . import errors
from .client.thrift import KeyConfig, Messages, Thrift
from .core.stats import Stats
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
from .pipeline.retry import RetryPolicy
from .scheduling.bucket import Cost, TokenBucket
from .scheduling.budget import LocalBudget
from .scheduling.limits import PRESETS, Limits, model_class

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
