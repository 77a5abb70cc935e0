"""Why admission refused a request, in words that say what to change.

Why a module of its own: these errors are what a caller reads when the gate says no; each
says that nothing was sent (so nothing was spent) and what to change, and carries the
``retry_after`` hint a caller can act on. Kept together so that the wording stays
consistent across the gate's refusals, and so that the gate (`scheduler`) reads as the
admission logic it is.
"""

from __future__ import annotations

from ..errors import ClientClosed, DeadlineExceeded, QueueFull

__all__ = ["closed_while_waiting", "deadline_before_admission", "deadline_missed", "queue_full"]


def closed_while_waiting() -> ClientClosed:
    """A waiter failed by `Gate.close`."""
    return ClientClosed(
        "the client was closed while this request waited for admission: it was "
        "not sent and its budget was not spent. Await your requests before "
        "closing, or call aclose(drain=True) to let queued requests finish first"
    )


def queue_full(waiting: int, limit: int, retry_after: float | None) -> QueueFull:
    """A newcomer refused: `waiting` requests already queue across the client's gates."""
    return QueueFull(
        f"{waiting} requests already wait for admission (max_queue="
        f"{limit}): shed load, retry later, or raise max_queue",
        retry_after=retry_after,
    )


def deadline_before_admission(retry_after: float | None) -> DeadlineExceeded:
    """A request whose deadline was spent before it reached the gate."""
    return DeadlineExceeded(
        "deadline reached before admission: the request was not sent; allow a longer "
        "deadline= or send fewer requests at once",
        retry_after=retry_after,
    )


def deadline_missed(deadline: float, retry_after: float | None) -> DeadlineExceeded:
    """A waiter not admitted within its `deadline` (seconds)."""
    return DeadlineExceeded(
        f"not admitted within deadline={deadline:g}s: the request was not sent. "
        "Allow a longer deadline=, use a higher priority, or send fewer requests",
        retry_after=retry_after,
    )
