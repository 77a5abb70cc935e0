"""The Redis round trip of a `SharedBudget`: what one call of `lease.lua` asks and gives.

Kept apart from `budget` because it is the wire, not the books: `budget` admits, takes and
refunds synchronously from the lease and decides *when* to call Redis; this module decides
*what* one call carries (a slice sized to this process's share and rate, the lease beyond
what it keeps, the ceiling and proof from the headers), encodes the script's arguments,
and folds its answer back into the lease (or hands over to `_fallback` when Redis is gone).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from ..bucket import ZERO, Cost
from ._fallback import enter_fallback, rejoin
from ._tuning import (
    _BURST,
    _COLD_POLL,
    _INF,
    _KEEP,
    _LOW,
    _PROBE_SHARE,
    _RENEW,
    _SHARED,
    MAX_SHARE,
    horizon_seconds,
    lease_lifetime,
    slice_seconds,
)

if TYPE_CHECKING:
    from .budget import SharedBudget

__all__ = ["cap_share", "estimate", "per_process_rpm", "round_trip", "script_args"]

log = logging.getLogger("asyncthrift.shared")


def _num(x: float) -> str:
    return repr(float(x))


async def round_trip(b: SharedBudget, now: float) -> None:
    """One call of the script if anything is due: a slice, a return, a ceiling, a rejoin."""
    store = b._store
    if b._mode != _SHARED:
        if not store.breaker.admit():
            return
        debt = [max(0.0, min(b._fb_debt[i], b._cap[i])) for i in range(3)]
        prior = [max(0.0, -b._fb_debt_base[i]) for i in range(3)]
        ok, res = await store.call(b, script_args(b, ZERO, ZERO, ZERO, debt, prior=prior))
        if ok:
            loop_now = asyncio.get_running_loop().time()
            _seen(b, res, loop_now)
            rejoin(b, res, loop_now=loop_now)
        return
    head = b._head
    lease, pending = b._lease, b._pending
    period = b.limits.period
    need = [0.0, 0.0, 0.0]
    ask = [0.0, 0.0, 0.0]
    asking = False
    recent = b._busy(now)
    if head is not None or recent:
        short = False
        for i in b._dims:
            held = lease[i] + pending[i]
            if head is not None and head[i] > held:
                need[i] = head[i] - held
                short = True
            if held < b._low[i]:
                short = True
        if short:
            estimate(b, now)
            asking = True
            # a slice: see below; scaled as one (the dimensions keep their proportions)
            # to at most MAX_SHARE of every capacity
            chunk = [0.0, 0.0, 0.0]  # the slice from the refill: what the lease aims at
            burst = [0.0, 0.0, 0.0]  # more, while the bucket holds a burst: asked, not kept
            scale = 1.0
            gate = b._gate
            waiting = gate.waiting if gate is not None else 0
            sent = b._sent
            share = cap_share(b)
            window = slice_seconds(period, per_process_rpm(b))
            for i in b._dims:
                # with requests queued here: this process's fair share of a slice's
                # window of the shared refill (one over the processes asking lately), but
                # no more than the queue needs at its mean cost so far (a burst's last
                # slices do not strand budget others wait for); otherwise its recent rate
                # over the window, at most twice its share. While the bucket holds more
                # (a burst), the ask is a fair share of `_BURST` of the level the last
                # call saw, so a burst is drawn in a few calls; what the lease then holds
                # beyond its target still goes back (refunds are not hoarded)
                fair = b._cap[i] / period * window * share
                fair_burst = max(fair, b._level[i] * _BURST * share)
                if waiting and sent[0] > 0:
                    queue = waiting * sent[i] / sent[0]
                    c = max(0.0, min(fair, queue))
                    cb = max(0.0, min(fair_burst, queue))
                else:
                    c = cb = min(b._est[i] * window, 2.0 * fair)
                if head is not None:
                    c, cb = max(c, head[i]), max(cb, head[i])
                chunk[i], burst[i] = c, cb
                if cb > b._cap[i] * MAX_SHARE:
                    scale = min(scale, b._cap[i] * MAX_SHARE / cb)
            for i in b._dims:
                # a dimension asks only what it lacks (the head plus a slice); one that
                # holds enough asks nothing, so a dimension the others overdrew (reserved
                # ahead) does not hold up the grant of the one short. It then holds about
                # `_LOW` + 1 targets and asks again once below `_LOW` of one. A target is
                # at least the largest request seen: a lease that cannot pay for one sends
                # each such request to Redis (max_tokens of 1024 against a slice of 700
                # output tokens did)
                target = max(min(chunk[i], burst[i] * scale), b._big[i])
                if head is not None:
                    target = max(target, head[i])
                want = max(target * (1.0 + _LOW), burst[i] * scale)
                ask[i] = max(need[i], want - (lease[i] + pending[i]), 0.0)
                b._target[i] = target
    give = [0.0, 0.0, 0.0]
    for i in b._dims:  # lease beyond what this process keeps goes back
        extra = lease[i] - b._keep[i]
        if extra > 0:
            give[i] += extra
    idle_return = False
    if not asking and head is None and not recent:
        holding = [lease[i] + pending[i] for i in range(3)]
        if any(holding[i] for i in b._dims):
            idle_return = True
            give = holding
    renew = now - b._called_at >= lease_lifetime(period) * _RENEW and any(
        lease[i] + pending[i] for i in b._dims
    )
    if not (asking or idle_return or b._urgent or renew) and not (
        b._flush_due and any(give[i] > 0 for i in b._dims)
    ):
        b._flush_due = False
        return
    if not idle_return:
        for i in b._dims:
            lease[i] -= give[i]
    clamp, proof = b._clamp, b._proof
    b._clamp = [_INF, _INF, _INF]
    b._proof = [_INF, _INF, _INF]
    b._flush_due = b._urgent = False
    if b._flush_at is not None:
        b._flush_at.cancel()
        b._flush_at = None
    t = now
    args = script_args(
        b,
        Cost(*need),
        Cost(*ask),
        Cost(*give),
        list(b._debt_due),
        clamp=[c + b._rate[i] * t for i, c in enumerate(clamp)],
        proof=[c + b._rate[i] * t for i, c in enumerate(proof)],
        holds=[0.0, 0.0, 0.0] if idle_return else [lease[i] + pending[i] for i in range(3)],
    )
    if idle_return:
        b._lease = [0.0, 0.0, 0.0]
        b._pending = [0.0, 0.0, 0.0]
        b._pots.clear()
    ok, res = await store.call(b, args)
    loop_now = asyncio.get_running_loop().time()
    if not ok:
        for i in b._dims:  # not returned after all
            b._lease[i] += give[i]
        if store.breaker.open:
            enter_fallback(b, loop_now)
        else:
            b._not_before = loop_now + store.breaker.timeout
            b._kick.set()
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s t=%.3f need=%s ask=%s give=%s -> %s",
            b.name,
            now,
            [round(x) for x in need],
            [round(x) for x in ask],
            [round(x) for x in give],
            res,
        )
    b._debt_due = [0.0, 0.0, 0.0]  # charged (or proved moot by a cold bucket's proof)
    _seen(b, res, loop_now)
    status = int(res[0])
    granted = (float(res[1]), float(res[2]), float(res[3]))
    ready, retry = float(res[4]), float(res[5])
    b.processes = max(1, int(res[6]))
    b.active = max(1, int(res[10]))
    b._level = [float(res[7]), float(res[8]), float(res[9])]
    b._overdrawn = any(b._level[i] < 0 for i in b._dims)
    if status in (0, 1):
        b._cold = status == 1
        if asking:
            b.grants += 1
            b._head = None
            paid = (float(res[11]), float(res[12]), float(res[13])) if ready > 0 else granted
            later = (granted[0] - paid[0], granted[1] - paid[1], granted[2] - paid[2])
            for i in b._dims:
                b._lease[i] += paid[i]
            if ready > 0 and any(later[i] > 0 for i in b._dims):
                pots, at = b._pots, loop_now + ready
                k = len(pots)
                while k and pots[k - 1][0] > at:  # kept in the order they are paid for
                    k -= 1
                pots.insert(k, (at, later))
                for i in b._dims:
                    b._pending[i] += later[i]
            for i in b._dims:
                target = max(b._target[i], granted[i])
                b._low[i] = target * _LOW
                # while the shared level is overdrawn others wait for it: keep no more
                # than the target; else up to `_KEEP` targets (refunds stay usable here)
                b._keep[i] = target * ((1.0 + _LOW) if b._overdrawn else _KEEP)
            b._wake()
    else:
        b.refusals += 1
        b._cold = status == 3
        wait = min(retry, _COLD_POLL) if b._cold else retry
        b._not_before = loop_now + min(wait, period)
        b._kick.set()  # ask again then


def per_process_rpm(b: SharedBudget) -> float:
    """This process's fair share of the shared request rate (requests/s; 0: no rpm)."""
    return b._rate[0] * cap_share(b)


def cap_share(b: SharedBudget) -> float:
    """This process's fair share of the shared rate: one over the processes asking lately."""
    return 1.0 / max(1, b.active)


def estimate(b: SharedBudget, now: float) -> None:
    """Update this process's rate of consumption (units/s), averaged over a slice."""
    dt = now - b._est_at
    window = slice_seconds(b.limits.period, per_process_rpm(b))
    if dt < window * 0.1:
        return
    weight = 1.0 - math.exp(-dt / window)
    for i in b._dims:
        b._est[i] += weight * (b._used[i] / dt - b._est[i])
    b._used = [0.0, 0.0, 0.0]
    b._est_at = now


def script_args(  # the order `lease.lua` reads its ARGV in
    b: SharedBudget,
    need: Cost,
    ask: Cost,
    give: Cost | list[float],
    debt: list[float],
    *,
    clamp: list[float] | None = None,
    proof: list[float] | None = None,
    holds: list[float] | None = None,
    prior: list[float] | None = None,
) -> list[str]:
    period = b.limits.period
    args = [
        b._store.process_id,
        _num(period),
        _num(horizon_seconds(period, per_process_rpm(b))),
        _num(min(period * _PROBE_SHARE, 5.0)),
    ]
    for i in range(3):
        c = clamp[i] if clamp is not None else _INF
        p = proof[i] if proof is not None else _INF
        args += [
            _num(b._cap[i]),
            _num(need[i]),
            _num(ask[i]),
            _num(give[i]),
            "" if not math.isfinite(c) else _num(c),
            "" if not math.isfinite(p) else _num(p),
            _num(debt[i]),
        ]
    args.append(_num(lease_lifetime(period)))
    args += [_num(holds[i] if holds is not None else 0.0) for i in range(3)]
    args += [_num(prior[i] if prior is not None else 0.0) for i in range(3)]
    args += [b._epoch, "" if not b._epoch else str(b._seq)]
    return args


def _seen(b: SharedBudget, res: list[str], loop_now: float) -> None:
    """What every answer says: the bucket's epoch and sequence, and that the lease's record
    was renewed now."""
    if len(res) > 15:
        b._epoch, b._seq = res[14], int(res[15])
    b._called_at = loop_now
