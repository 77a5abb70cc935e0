"""`Pack`, packing's options: checked once, when the client is built.

Why a module of its own: `Thrift`'s option checking (`client/_config`) needs `Pack` and
`pack_option`, and nothing of the packer that sends windows; the packer's machinery stays
out of the config's import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidArgument

__all__ = ["Pack", "pack_option"]


@dataclass(frozen=True, slots=True)
class Pack:
    """How requests are packed. Every bound closes a window early; none is a promise.

    window_ms: how long a window stays open for more items after its first.
    interactive_window_ms: the window for an item in the interactive lane (or higher).
    max_items: items per packed call.
    max_input_tokens: estimated input tokens of the items' texts per packed call.
    max_output_tokens: cap on the packed call's ``max_tokens`` (sized from what the group's
        replies take, see `asyncthrift.savings._pack_guard`).
    learn: requests of a new group sent alone, before its first packed call, to learn how
        long its answers are and what a request costs alone (0: pack from the first window).
    max_resend_share: packing of a group is turned off when more than this share of its
        recent answers alone were cut at ``max_tokens``, or of its recent packed items
        were re-sent alone.
    pause_s: how long packing of a group stays off before it is tried again.
    cost_guard: pack a window only when it is predicted to cost less than its requests
        alone, and turn packing of a group off when a packed call cost more than its
        answered items would have. False: save calls (RPM) even where the JSON wrapping of
        the answers costs more than the shared prompt saves.
    """

    window_ms: float = 150.0
    interactive_window_ms: float = 10.0
    max_items: int = 16
    max_input_tokens: int = 16_000
    max_output_tokens: int = 8_192
    learn: int = 3
    max_resend_share: float = 0.25
    pause_s: float = 300.0
    cost_guard: bool = True

    def __post_init__(self) -> None:
        for name, unit in (
            ("window_ms", "milliseconds"),
            ("interactive_window_ms", "milliseconds"),
            ("pause_s", "seconds"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                raise InvalidArgument(f"Pack.{name} must be {unit} >= 0, got {v!r}")
        for name, low in (
            ("max_items", 1),
            ("max_input_tokens", 1),
            ("max_output_tokens", 1),
            ("learn", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidArgument(f"Pack.{name} must be an int >= {low}, got {v!r}")
        v = self.max_resend_share
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise InvalidArgument(f"Pack.max_resend_share must be a share in [0, 1], got {v!r}")
        if not isinstance(self.cost_guard, bool):
            raise TypeError(f"Pack.cost_guard must be True or False, got {self.cost_guard!r}")


def pack_option(value: object) -> Pack | None:
    """`Thrift(pack=...)`: True (the defaults), a `Pack`, or False / None (off)."""
    if value is None or value is False:
        return None
    if value is True:
        return Pack()
    if isinstance(value, Pack):
        return value
    raise TypeError(f"pack= must be True, False, None or a Pack(...), got {value!r}")
