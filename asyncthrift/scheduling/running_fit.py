"""`RunningFit`: running least-squares sums over a sliding window of readings, the one
implementation both foreign-consumer learners fit with.

Why one: a local budget's learner (`scheduling.foreign.ForeignShare`) and a shared budget's
(`stores.shared._foreign_fit.ForeignFit`) each kept their own copy of the same sums (the
slope of ``refill - charges - remaining`` over time, a point dropped as it leaves the window,
the slope without its most outlying point); a fix to one was a fix the other missed. The
local learner also fits where in its flight a reading is (`x`, `theta`); the shared one fits
``x = 0`` and folds a bunch of readings into one point (`replace_last`).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Point", "RunningFit"]

#: `RunningFit.theta`: `x` and `t` this close to collinear (1 - their squared correlation)
#: are one regressor.
_COLLINEAR = 1e-6

#: (t from `RunningFit.base`, x, y from `RunningFit.y0`)
Point = tuple[float, float, float]


class RunningFit:
    """Running least-squares sums over a sliding window of (t, x, y) points (t from `base`):
    ``y = a + slope * t + theta * x``, `theta` in [0, 1] (see `ForeignShare.learn`)."""

    __slots__ = (
        "base",
        "points",
        "st",
        "stt",
        "stx",
        "sty",
        "sx",
        "sxx",
        "sxy",
        "sy",
        "syy",
        "y0",
    )

    def __init__(self) -> None:
        self.points: deque[Point] = deque()
        self.base = self.y0 = 0.0
        self.clear()

    def clear(self) -> None:
        self.points.clear()
        self.st = self.sy = self.stt = self.sty = self.syy = 0.0
        self.sx = self.sxx = self.stx = self.sxy = 0.0

    def add(self, t: float, x: float, y: float) -> None:
        if not self.points:
            self.base, self.y0 = t, y  # small numbers in the sums: no cancellation
        t -= self.base
        y -= self.y0
        self.points.append((t, x, y))
        self._count(t, x, y, 1.0)

    def replace_last(self, point: Point) -> None:
        """Put `point` (already relative to `base` and `y0`) in the newest one's place."""
        points = self.points
        self._count(*points[-1], -1.0)
        points[-1] = point
        self._count(*point, 1.0)

    def _count(self, t: float, x: float, y: float, sign: float) -> None:
        self.st += sign * t
        self.sy += sign * y
        self.sx += sign * x
        self.stt += sign * t * t
        self.sty += sign * t * y
        self.syy += sign * y * y
        self.sxx += sign * x * x
        self.stx += sign * t * x
        self.sxy += sign * x * y

    def drop_before(self, t: float, keep: int) -> None:
        """Forget the points older than `t`, but never the newest `keep` of them."""
        t -= self.base
        points = self.points
        while len(points) > keep and points[0][0] < t:
            self._count(*points.popleft(), -1.0)

    def span(self) -> float:
        return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    def _centred(self) -> tuple[int, float, float, float, float, float, float]:
        """n and the centred sums: (tt, xx, tx, ty, xy, yy)."""
        n = len(self.points)
        if not n:
            return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        return (
            n,
            self.stt - self.st * self.st / n,
            self.sxx - self.sx * self.sx / n,
            self.stx - self.st * self.sx / n,
            self.sty - self.st * self.sy / n,
            self.sxy - self.sx * self.sy / n,
            self.syy - self.sy * self.sy / n,
        )

    def theta(self) -> float | None:
        """`x`'s coefficient in [0, 1], fitted with a slope in `t` alongside (None if the
        points cannot tell it: too few, or `x` constant or moving with `t` only)."""
        n, stt, sxx, stx, sty, sxy, _ = self._centred()
        det = stt * sxx - stx * stx
        if n < 4 or stt <= 0.0 or sxx <= 0.0 or det <= _COLLINEAR * stt * sxx:
            return None
        return min(1.0, max(0.0, (sxy * stt - sty * stx) / det))

    def slope(self, theta: float) -> tuple[float, float]:
        """The least-squares slope in `t` of ``y - theta * x`` and its standard error (0,
        inf without enough points)."""
        n, stt, sxx, stx, sty, sxy, syy = self._centred()
        if n < 3 or stt <= 0.0:
            return 0.0, math.inf
        stv = sty - theta * stx
        svv = syy - 2.0 * theta * sxy + theta * theta * sxx
        slope = stv / stt
        residual = max(0.0, svv - slope * stv) / (n - 2)
        return slope, math.sqrt(residual / stt)

    def worst(self, theta: float, slope: float) -> int:
        """The index of the point farthest from the line of `slope` (in `t`, of
        ``y - theta * x``) through the points' means."""
        n = len(self.points)
        mt, mv = self.st / n, (self.sy - theta * self.sx) / n
        points = self.points
        return max(
            range(n),
            key=lambda j: abs(
                points[j][2] - theta * points[j][1] - mv - slope * (points[j][0] - mt)
            ),
        )

    def take_out(self, k: int) -> Point:
        """Leave the `k`-th point out of the sums (`put_back` restores it)."""
        point = self.points[k]
        self._count(*point, -1.0)
        del self.points[k]
        return point

    def put_back(self, k: int, point: Point) -> None:
        self.points.insert(k, point)
        self._count(*point, 1.0)

    def without_worst(self, theta: float) -> tuple[float, float]:
        """`slope` with the point farthest from the fitted line left out."""
        slope, _ = self.slope(theta)
        n = len(self.points)
        if n < 4:
            return 0.0, math.inf
        k = self.worst(theta, slope)
        worst = self.take_out(k)  # so that `slope` counts one point fewer
        try:
            return self.slope(theta)
        finally:
            self.put_back(k, worst)
