"""`asyncthrift.counting`, the path README.md and docs/ show, re-exported: the module lives
in `asyncthrift.client.counting`, in its layer."""

from .client.counting import (
    COUNT_TOKENS_CLASS as COUNT_TOKENS_CLASS,
)
from .client.counting import (
    CountLimited as CountLimited,
)
from .client.counting import (
    count_tokens as count_tokens,
)
from .client.counting import (
    set_count_tokens_limit as set_count_tokens_limit,
)
from .client.counting import (
    split_count_kwargs as split_count_kwargs,
)

__all__ = [
    "COUNT_TOKENS_CLASS",
    "CountLimited",
    "count_tokens",
    "set_count_tokens_limit",
    "split_count_kwargs",
]
