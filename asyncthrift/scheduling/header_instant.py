"""`HeaderInstant`: which instant of its flight a non-streamed answer's headers describe.

The API does not say whether a non-streamed answer's rate-limit headers are the server's
level at the request's admission or at its completion, and a budget reading them must be
right under both (`HeaderResync`). That costs: a reading whose instant may be the answer's
end may have its own unused output refunded already, so every ceiling takes that refund
off; a server writing headers at admission never has it, and each of its readings clamped
the level by the answer's unused reservation (fast answers, 0.3 s, headers as of admission:
1,200-1,400 output tokens lowered and never lifted back, 1.09 of the ideal makespan
against 1.05-1.06 under completion headers, `bench/RESULTS.md`, branch local29).

The requests dimension tells the two apart. Its `-remaining` is an exact integer (floored,
never rounded to a thousand, never refunded) and every request costs exactly 1 at its
admission, so for a lone client ``rate x t - requests taken by t - remaining`` is the same
number at every reading's true instant ``t`` (up to the floor and what was on its way). Read
at the request's own take (admission) and at the answer's arrival here (completion), the two
values differ by ``rate x flight - requests taken during the flight``: where that differs
between two consecutive readings, only the right instant keeps the value still. Each such
pair is a vote; a server's instant does not change, so the votes add up over the run.

Safe while unlearnt (`at` is None: the budget reads every reading both ways, as before).
What could make it learn wrong, and why it does not: another consumer's requests and a
clock skew move both values alike (a skew moves nothing: both are read on this process's
clock); a stalled event loop holds requests taken but not written, which the server had
not counted at the answer's end, so completion readings vote wrong now and then (8 of 231
with the loop blocked 75 % of the time, ``tests/test_header_instant.py`` repeats the
pattern). So a mode needs `_VOTES` votes and `_MARGIN` times as many as the other, and any
429 forgets it for good: if a refusal can come from trusting it, it is not trusted again.
"""

from __future__ import annotations

__all__ = ["HeaderInstant"]

#: Votes a mode needs before it is believed, and how many times the other mode's votes.
_VOTES = 24
_MARGIN = 12
#: Two readings whose values agree within this (requests) are the same value: the floor of
#: `-remaining` and the refill of a request's way to the server move it by up to one.
_STILL = 1.5
#: ... and differ if further apart than this.
_MOVED = 3.5
#: Consecutive readings further apart than this share of the period are not compared (the
#: server's bucket may have sat at its cap between them, and wasted refill moves both).
_PAIR_SPAN = 0.05


class HeaderInstant:
    """Learnt from the requests dimension: which instant non-streamed headers describe."""

    __slots__ = ("_last", "_spoilt", "at", "votes")

    def __init__(self) -> None:
        #: "admission", "completion", or None while not known
        self.at: str | None = None
        #: votes so far: (admission, completion)
        self.votes = [0, 0]
        # the last usable reading: (when, value as of admission, value as of completion)
        self._last: tuple[float, float, float] | None = None
        self._spoilt = False

    def observe(
        self,
        remaining: float,
        capacity: float,
        period: float,
        *,
        sent_at: float,
        taken_by_own: float,
        now: float,
        taken_now: float,
        skip: bool,
        refused: bool,
    ) -> None:
        """A requests `-remaining` of a limit of `capacity` a `period` (see `read`); `skip`:
        not one to compare (a cold reading, a stream's, a refused request's); `refused`: a
        429 (or 529)."""
        if refused:
            self.refused()
        elif skip or remaining >= capacity - 2.0:
            self.skip()  # near its cap, the server's bucket may have wasted refill
        else:
            self.read(
                remaining,
                capacity / period,
                sent_at=sent_at,
                taken_by_own=taken_by_own,
                now=now,
                taken_now=taken_now,
                period=period,
            )

    def read(
        self,
        remaining: float,
        rate: float,
        *,
        sent_at: float,
        taken_by_own: float,
        now: float,
        taken_now: float,
        period: float,
    ) -> None:
        """A non-streamed answer's requests `-remaining` (the request admitted at `sent_at`,
        `taken_by_own` requests taken here by then, its own included; `taken_now` by
        `now`), against a refill of `rate` requests a second."""
        if self._spoilt:
            return
        at_admission = rate * sent_at - taken_by_own - remaining
        at_completion = rate * now - taken_now - remaining
        last, self._last = self._last, (now, at_admission, at_completion)
        if last is None or now - last[0] > period * _PAIR_SPAN:
            return
        moved_a = abs(at_admission - last[1])
        moved_c = abs(at_completion - last[2])
        if moved_a <= _STILL < _MOVED <= moved_c:
            self.votes[0] += 1
        elif moved_c <= _STILL < _MOVED <= moved_a:
            self.votes[1] += 1
        else:
            return
        a, c = self.votes
        if a >= _VOTES and a >= _MARGIN * c:
            self.at = "admission"
        elif c >= _VOTES and c >= _MARGIN * a:
            self.at = "completion"
        else:
            self.at = None

    def skip(self) -> None:
        """A reading that cannot be compared with the next (the server's bucket near its cap,
        a cold one): the next starts over."""
        self._last = None

    def refused(self) -> None:
        """A 429: whatever was learnt is forgotten, and nothing is learnt again."""
        self._spoilt = True
        self.at = None
        self._last = None
