"""When an abandoned answer's output goes back (`_abandonment._refund_due`), in virtual time:
not while an answer sent with it is still running, even with firm answer times.

Firm times fitted to a warm-up's short answers (40-49 tokens) gave a 97-token abandoned
answer's output back 0.6 s before a finishing server ended it, keeping 60 tokens of it
(`tests/test_abandoned.py`'s half-cancelled run: hidden there by 352 tokens our level sat
below the server's, a 429 once a closer lower bound lifted the level to the server's).
"""

from __future__ import annotations

from asyncthrift.pipeline._abandonment import _refund_due
from asyncthrift.pipeline._answer_times import AnswerTimes


class Clock:
    """The one thing `_refund_due` asks of its loop."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


def warmed_up() -> AnswerTimes:
    """Ten short answers (45 tokens, 2 s + 20 ms per token), all ended: firm times."""
    times = AnswerTimes()
    for k in range(10):
        times.observe(2.0 + 0.02 * 45, 45, 1024, sent_at=float(k) * 0.1)
    assert times.firm
    return times


def test_the_refund_waits_for_an_answer_sent_with_it_that_is_still_running() -> None:
    clock, times = Clock(), warmed_up()
    other, abandoned = object(), object()
    times.started(other, 10.0)
    times.started(abandoned, 10.0)
    clock.now = 11.0
    times.ended(abandoned)  # cancelled 1 s in
    due = _refund_due(clock, 10.0, times, lambda: times.longest(1024), 10.0 + times.prior(1024))  # type: ignore[arg-type]
    first = due()
    assert first is not None and first < 10.0 + 2.0 + 0.02 * 97  # the short answers' time
    clock.now = first
    again = due()
    assert again is not None and again > first  # `other` still runs: it may be as long
    times.ended(other)
    times.observe(2.0 + 0.02 * 97, 97, 1024, sent_at=10.0)
    clock.now = again
    assert due() is None
    assert times.longest(1024) >= 97  # what is kept back now covers it


def test_the_refund_never_waits_past_the_latest() -> None:
    clock, times = Clock(), warmed_up()
    other = object()
    times.started(other, 10.0)  # never ends
    latest = 10.0 + times.prior(1024)
    due = _refund_due(clock, 10.0, times, lambda: times.longest(1024), latest)  # type: ignore[arg-type]
    clock.now = 10.0
    for _ in range(100):
        when = due()
        if when is None:
            break
        assert when <= latest
        clock.now = when
    assert clock.now <= latest and due() is None


def test_nothing_running_gives_it_back_when_the_answer_would_have_ended() -> None:
    clock, times = Clock(), warmed_up()
    due = _refund_due(clock, 10.0, times, lambda: times.longest(1024), 10.0 + times.prior(1024))  # type: ignore[arg-type]
    clock.now = 10.5
    first = due()
    assert first is not None
    clock.now = first
    assert due() is None
