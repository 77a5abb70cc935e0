"""`asyncthrift.spend_redis`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.stores.spend_redis`, in its layer."""

from .stores.spend_redis import (
    RedisSpendLedger as RedisSpendLedger,
)

__all__ = [
    "RedisSpendLedger",
]
