"""SuffixPeaks: the highest header reading of a window, against the scan it replaces."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncthrift._peaks import SuffixPeaks

Triple = tuple[float, float, float]


def scan(
    times: list[float],
    nets: list[Triple],
    rates: Triple,
    net_now: Triple,
    sent_at: float,
    now: float,
) -> Triple:
    """The definition: every change at or after `sent_at`, and `now` itself (zero)."""
    out = [0.0, 0.0, 0.0]
    for k in range(bisect.bisect_left(times, sent_at), len(times)):
        for d in range(3):
            out[d] = max(out[d], nets[k][d] - net_now[d] + rates[d] * (now - times[k]))
    return (out[0], out[1], out[2])


step = st.one_of(
    # a take or a refund after `gap` seconds (several at one loop instant when gap is 0)
    st.tuples(
        st.just("change"),
        st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.3]),
        st.tuples(*(st.integers(min_value=-300, max_value=500) for _ in range(3))),
    ),
    # an answer: the request sent `back` changes ago
    st.tuples(st.just("answer"), st.integers(min_value=0, max_value=40), st.just((0, 0, 0))),
    # another consumer's share learnt: one refill rate changes
    st.tuples(st.just("rate"), st.integers(min_value=0, max_value=2), st.just((0, 0, 0))),
    st.tuples(st.just("trim"), st.just(0), st.just((0, 0, 0))),
)


@given(st.lists(step, min_size=1, max_size=120))
def test_the_peaks_equal_the_scan_of_the_window(steps: list[tuple[str, float, Triple]]) -> None:
    origin = 1_000.0
    peaks = SuffixPeaks(origin)
    times: list[float] = []
    nets: list[Triple] = []
    net = [0.0, 0.0, 0.0]
    rates: Triple = (10.0, 2_000.0, 500.0)
    now = origin
    for kind, arg, delta in steps:
        if kind == "change":
            now += arg
            net = [net[d] + delta[d] for d in range(3)]
            times.append(now)
            nets.append((net[0], net[1], net[2]))
        elif kind == "rate":
            changed = list(rates)
            changed[int(arg)] *= 0.7
            rates = (changed[0], changed[1], changed[2])
        elif kind == "trim" and len(times) > 4:
            del times[: len(times) // 2]
            del nets[: len(nets) // 2]
            peaks.invalidate()
        elif kind == "answer" and times:
            sent_at = times[max(0, len(times) - 1 - int(arg))]
            net_now = (net[0], net[1], net[2])
            at = now + 0.05
            got = peaks.highest(times, nets, rates, net_now, sent_at, at)
            assert got == pytest.approx(scan(times, nets, rates, net_now, sent_at, at), abs=1e-6)


def test_an_answer_older_than_the_stacks_rebuilds_them() -> None:
    peaks = SuffixPeaks(0.0)
    times = [0.0, 1.0, 2.0, 3.0]
    nets = [(1.0, 0.0, 0.0), (9.0, 0.0, 0.0), (2.0, 0.0, 0.0), (3.0, 0.0, 0.0)]
    rates = (1.0, 1.0, 1.0)
    now = (3.0, 0.0, 0.0)
    assert peaks.highest(times, nets, rates, now, 2.0, 4.0)[0] == pytest.approx(1.0)
    # the request sent at 1.0 sees the 9 charged net by then, refilled for 3 s
    assert peaks.highest(times, nets, rates, now, 1.0, 4.0)[0] == pytest.approx(9.0)
