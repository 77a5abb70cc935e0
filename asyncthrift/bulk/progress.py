"""The live progress line: done/total, rate, usage against each limit, 429s, ETA.

On a terminal one line is redrawn in place a few times a second; anywhere else (a log file, a
CI job) a plain line is printed every few seconds instead, so logs stay readable. Rates are
measured over a short sliding window, so they follow the current pace rather than the
average since the start, and token rates are shown per limit period next to the limit they
count against: the number that says whether the run is using its quota.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ..scheduling.limits import Limits

__all__ = ["ProgressBar", "Sample", "format_duration", "human", "render"]


@dataclass(frozen=True, slots=True)
class Sample:
    """The runner's state at one instant, as the progress line needs it."""

    t: float
    done: int
    """Input lines dealt with so far (written, skipped as already done, or bad)."""
    total: int | None
    """Lines in the input, once counted (None until then)."""
    finished: int
    """Requests that finished in this run: the pace the ETA is measured from."""
    requests: int
    """Upstream calls, retries included."""
    input_tokens: int
    """Input tokens that count against the input limit (cache reads excluded)."""
    output_tokens: int
    rate_limited: int
    in_flight: int
    limits: Limits | None
    refilled: tuple[float | None, ...] | None = None
    """The budget's refill credited so far per dimension (`LocalBudget.refilled`), if known."""


def human(n: float) -> str:
    """1234 -> '1.2k', 2_000_000 -> '2.0M': short enough for a status line."""
    a = abs(n)
    if a >= 999_950:
        return f"{n / 1e6:.1f}M"
    if a >= 1000:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    """Seconds as 'H:MM:SS' or 'M:SS'."""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _per_period(rate: float, limits: Limits | None) -> float:
    return rate * (limits.period if limits is not None else 60.0)


def _refilled(sample: Sample, i: int) -> float | None:
    return None if sample.refilled is None else sample.refilled[i]


def render(now: Sample, then: Sample | None, width: int = 100, bar: bool = True) -> str:
    """One status line from the current sample and one from the start of the rate window."""
    total = now.total
    parts: list[str] = []
    if total:
        frac = min(1.0, now.done / total)
        parts.append(f"{now.done:,}/{total:,} {frac * 100:3.0f}%")
        if bar:
            cells = 20
            filled = int(frac * cells)
            parts.append("[" + "#" * filled + "." * (cells - filled) + "]")
    else:
        parts.append(f"{now.done:,}/?")
    dt = now.t - then.t if then is not None else 0.0
    lim = now.limits
    if then is not None and dt > 0:
        pace = (now.finished - then.finished) / dt
        parts.append(f"{pace:,.1f}/s")
        unit = "min" if lim is None or lim.period == 60 else f"{lim.period:g}s"
        usage = []
        for i, (label, cur, old, cap) in enumerate(
            (
                ("req", now.requests, then.requests, lim.rpm if lim else None),
                ("in", now.input_tokens, then.input_tokens, lim.itpm if lim else None),
                ("out", now.output_tokens, then.output_tokens, lim.otpm if lim else None),
            )
        ):
            spent = float(cur - old)
            a, b = _refilled(now, i), _refilled(then, i)
            if a is not None and b is not None:
                # a burst from a full bucket spends its capacity, not a rate: count at most
                # the refill credited meanwhile, which never exceeds the limit
                spent = max(0.0, min(spent, a - b))
            value = _per_period(spent / dt, lim)
            usage.append(f"{label} {human(value)}" + (f"/{human(cap)}" if cap else ""))
        parts.append(" ".join(usage) + f" per {unit}")
    else:
        pace = 0.0
    parts.append(f"429s {now.rate_limited}")
    parts.append(f"in flight {now.in_flight}")
    if total and now.done < total:
        parts.append("ETA " + (format_duration((total - now.done) / pace) if pace > 0 else "?"))
    line = " | ".join(parts)
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


class ProgressBar:
    """Draws `render` of the runner's samples on `stream` until stopped."""

    def __init__(
        self,
        stream: TextIO,
        sample: Callable[[], Sample],
        *,
        tty: bool,
        interval: float | None = None,
        window: float = 10.0,
    ) -> None:
        self._stream = stream
        self._sample = sample
        self._tty = tty
        self._interval = interval if interval is not None else (0.2 if tty else 10.0)
        self._window = window
        self._history: deque[Sample] = deque()
        self._task: asyncio.Task[None] | None = None
        self._drawn = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="asyncthrift-progress")

    async def stop(self) -> None:
        """Stop redrawing and leave the terminal on a fresh line."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.clear()

    def message(self, text: str) -> None:
        """Print a line of text without garbling the status line."""
        self.clear()
        print(text, file=self._stream, flush=True)

    def clear(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
            self._drawn = False

    def draw(self) -> None:
        now = self._sample()
        history = self._history
        history.append(now)
        while len(history) > 2 and now.t - history[1].t >= self._window:
            history.popleft()
        then = history[0] if history[0] is not now else None
        if self._tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self._stream.write("\r\x1b[2K" + render(now, then, width))
            self._drawn = True
        else:
            self._stream.write(render(now, then, 10_000, bar=False) + "\n")
        self._stream.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.draw()
