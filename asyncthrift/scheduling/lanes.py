"""Priority lanes and the client-wide queue count: what admission shares across gates.

A client has one `Gate` per model class (`scheduler`), but a request's priority and the
``max_queue`` limit mean the same thing in all of them. `LANES` and `lane_level` turn a
priority into the level the gate's heap ages against; one `QueueCounter` counts waiters
across every gate of a client and carries its closed flag. Kept apart from the gate so that
option checking (`_options`), observers and the bulk reader can name lanes without pulling
in the admission machinery.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from ..errors import ClientClosed, InvalidArgument

__all__ = ["LANES", "Priority", "QueueCounter", "lane_level"]

Priority: TypeAlias = Literal["interactive", "default", "batch"] | int
"""A lane name (``"interactive"`` > ``"default"`` > ``"batch"``) or an int level (higher is
served first). A `Literal`, so that a type checker catches ``priority="urgent"``."""


#: Named lanes and their levels; an int priority is a level of its own.
LANES: Final = {"interactive": 2, "default": 1, "batch": 0}


def lane_level(priority: object) -> int:
    """The numeric level of `priority` (a lane name or an int); raises on anything else."""
    if isinstance(priority, str):
        try:
            return LANES[priority]
        except KeyError:
            raise InvalidArgument(
                f"unknown priority {priority!r}: use 'interactive', 'default', 'batch' "
                "or an int (higher is served first)"
            ) from None
    if isinstance(priority, int) and not isinstance(priority, bool):
        return priority
    raise TypeError(
        f"priority must be 'interactive', 'default', 'batch' or an int, "
        f"got {type(priority).__name__}"
    )


class QueueCounter:
    """How many requests wait across all gates of one client, against `max_queue`."""

    __slots__ = ("closed", "limit", "waiting")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidArgument(f"max_queue must be a non-negative int or None, got {limit!r}")
        self.limit = limit
        self.waiting = 0
        self.closed = False

    def close(self) -> None:
        """Refuse every new admission in every gate sharing this counter (waiters already
        queued are failed by `Gate.close`, or served first when the client drains)."""
        self.closed = True

    def check_open(self) -> None:
        """Raise `ClientClosed` if the client was closed."""
        if self.closed:
            raise ClientClosed(
                "this Thrift client is closed, so the request was not sent (a failed attempt "
                "is not retried after close): create a new client, or close it only after "
                "your requests finish"
            )
