"""The tuning of shared leases: how big a slice is, how long a lease is kept, and the modes.

Kept apart because three modules read these numbers (the budget's bookkeeping in `budget`,
the round trip in `_roundtrip`, the fallback in `_fallback`), and one place to tune them is
one place to read them; `budget` re-exports the public ones.
"""

from __future__ import annotations

import math

__all__ = ["HORIZON", "MAX_SHARE", "SLICE"]

#: A slice covers about this fraction of the period of refill (a fair share of it) ...
SLICE = 0.15
#: ... or, while the shared bucket holds more (a burst), a fair share of this fraction of
#: the level the last call saw (the burst is drawn in a few calls, not dozens) ...
_BURST = 0.5
#: ... and never more than this fraction of a capacity.
MAX_SHARE = 0.25
#: A grant may reserve this fraction of the period of refill ahead of time.
HORIZON = 0.15
#: ... both (the slice's window and the horizon) at most this many seconds: what a lease
#: must cover is the rate the process needs over the time between its calls, not a share
#: of the period (at a 60 s period, 9 s of refill parcelled out ahead of time left it
#: held in leases and grants waiting for their instant while the limit went unused)
_WINDOW_MAX = 4.0
#: ... unless it takes longer for this process's share of the request rate to make this
#: many requests (a Redis call per slice: about 1 / `_MIN_REQUESTS` commands per request)
_MIN_REQUESTS = 8.0


#: A head that waits longer than this (seconds) for a grant reserved ahead, in a process with
#: at least the others' backlog (the end of a run), asks whether the level pays it now, at
#: most once per this long.
_NOW_ONLY = 0.5


#: While the shared level is overdrawn, a head short only of output tokens waits for the
#: refunds of the requests in flight before it asks, for at most this long (seconds) after
#: the last admission, and at most this fraction of the reserve-ahead horizon.
_REFUNDS_WAIT = 1.0
_REFUNDS_SHARE = 0.25


#: A lease's record in Redis lives this fraction of the period after the process's last call;
#: then what it held goes back to the bucket (a killed process's lease returns) ...
_LIFE = 0.5
#: ... so a process holding a lease calls at least every this fraction of that lifetime.
_RENEW = 0.5
#: ... and spends it at most this fraction of the lifetime after its last answered call was
#: sent (the rest: a margin for Redis's clock against the loop's), renewed or not.
_LIFE_USED = 0.98

#: A call due this close (seconds) is due now: asyncio fires a timer up to its clock's
#: resolution early, and waiting again for the remaining sliver spun the loop in place.
_EARLY = 1e-6


def lease_lifetime(period: float) -> float:
    """Seconds after a process's last call when Redis gives back what it held."""
    return period * _LIFE


def slice_seconds(period: float, per_process_rpm: float = 0.0) -> float:
    """The seconds of refill a slice covers at `period`: at most `_WINDOW_MAX`, unless this
    process's share of the request rate (`per_process_rpm`, requests per second) needs
    longer to make `_MIN_REQUESTS` (slower keys and more processes: fewer, not tinier,
    slices), and never more than `SLICE` of the period."""
    window = _WINDOW_MAX
    if per_process_rpm > 0:
        window = max(window, _MIN_REQUESTS / per_process_rpm)
    return min(period * SLICE, window)


#: Redis keeps what flowed in and out of a shared level for this fraction of the period (at
#: most `_FLOW_MAX` seconds): a header ceiling read at an earlier instant is moved by what the
#: other processes gave back and took since (`lease.lua`). A clamp is sent at the process's
#: next call, within a renewal's interval of the reading (a quarter period) and most often
#: within a second or two.
_FLOW = 0.25
_FLOW_MAX = 15.0


def flow_window(period: float) -> float:
    """Seconds Redis keeps its record of the flows of a shared level."""
    return min(period * _FLOW, _FLOW_MAX)


def horizon_seconds(period: float, per_process_rpm: float = 0.0) -> float:
    """How far ahead (seconds) a grant may reserve future refill: as a slice's window."""
    return min(period * HORIZON, slice_seconds(period, per_process_rpm))


#: A new slice is fetched when the lease falls below this fraction of its target ...
_LOW = 0.5
#: ... or this one while the shared level is below zero: every process then asks for the
#: same few seconds of refill (the level sits at the reserve-ahead floor) and a call gets
#: what the refill paid since the last call by anyone, so asking early only cut the slices
#: thinner (at 120 s beyond the burst a grant was ~4 requests, 0.21-0.23 calls per request;
#: the head's own need asks when it must)
_LOW_OVERDRAWN = 0.1
#: ... and the lease keeps at most this many targets (refunds beyond go back to Redis).
_KEEP = 2.0
#: Unused lease goes back to Redis after this fraction of the period without admissions,
#: or sooner: after `_IDLE_GAPS` of this process's average gap between requests.
_IDLE = 0.2
_IDLE_GAPS = 4.0
#: A lease grown beyond a slice by refunds gives the excess back within this fraction of the
#: period (with the next slice asked for, or alone).
_FLUSH = 0.5
#: While a lease is on its way the answer to `wait` (the arrival pokes the gate sooner).
_HINT = 0.05
#: A bucket Redis lost settles this many breaker cooldowns, plus `_SETTLE_MARGIN` seconds,
#: before a probe may prove its level: each process in its fallback finds Redis back within
#: a cooldown, and keeps admitting from its fallback share until the settle instant, then
#: stops (the level is proven by a reading taken after everyone stopped).
_SETTLE_COOLDOWNS = 2.0
_SETTLE_MARGIN = 1.0
#: While the shared bucket is cold (waiting for a probe's answer), how often to ask again.
_COLD_POLL = 0.05
#: ... doubling with each refusal in a row, up to this (seconds).
_COLD_POLL_MAX = 0.2
#: The probe of a cold bucket: how long (fraction of the period, at most 5 s) before another.
_PROBE_SHARE = 0.1

_SHARED, _FALLBACK, _CLOSED = 0, 1, 2
_INF = math.inf
