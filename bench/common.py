"""Shared helpers for the core benches (scheduler, overhead, latency).

- `run` runs a coroutine on the loop a user would run: uvloop when it is importable, else
  the standard asyncio loop (``--loop asyncio`` in every bench forces the latter).
- `md_table`, `percentile`, `median` format and summarise figures.
- Importing this module puts the repository root first on `sys.path`, so the benches
  measure the asyncthrift of their own checkout even when another copy is installed.
- `write_result` writes ``bench/results/<name>.md`` with the exact command, the date, the
  machine (CPUs and load average: the machines are shared, so every figure in a result is a
  ratio against a baseline measured in the same run) and the tables.
- `admitted_per_second` and `draw_admitted` bin a run's admission log and draw one panel of
  the "admitted per second against the limit" plots (`acceptance.py`, `bench_headers.py`).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "RESULTS",
    "ROOT",
    "admitted_per_second",
    "command_line",
    "draw_admitted",
    "loop_choices",
    "machine",
    "md_table",
    "median",
    "percentile",
    "resolve_loop",
    "revision",
    "run",
    "write_result",
]

T = TypeVar("T")

#: The checkout these benches belong to: measure its asyncthrift, whatever is installed.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Where every bench writes its markdown result and plots.
RESULTS = Path(__file__).resolve().parent / "results"


def loop_choices() -> tuple[str, ...]:
    """Loop names accepted by ``--loop``: ``auto`` is uvloop when importable."""
    return ("auto", "uvloop", "asyncio")


def resolve_loop(name: str) -> str:
    """The loop `name` selects on this machine: ``uvloop`` or ``asyncio``."""
    if name == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if name == "uvloop":
            raise SystemExit("--loop uvloop: uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run `main` to completion on a fresh loop of kind `loop` (see `resolve_loop`)."""
    if resolve_loop(loop) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile `q` (0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    """The median of `values`; NaN when there are none."""
    return statistics.median(values) if values else math.nan


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The command that produced this run, as a user would type it from the repo root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def revision() -> str:
    """The repository's commit, and whether asyncthrift/ differs from it (read-only git)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "asyncthrift"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not head:
        return "unknown"
    return head + (" with uncommitted changes in asyncthrift/" if dirty else "")


def machine(loop: str) -> str:
    """CPU count, load average, Python and loop: the conditions the figures were taken in."""
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return (
        f"{os.cpu_count()} CPUs, load average {load} at the end of the run; "
        f"CPython {platform.python_version()} on {platform.system()}; loop: {resolve_loop(loop)}"
    )


RUNS_HEADER = "## Runs, newest first"


def _earlier_runs(path: Path) -> list[str]:
    """The bullet lines of the runs section of an earlier result file, if any."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(RUNS_HEADER) + 1
    except ValueError:
        return []
    out = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if line.startswith("- "):
            out.append(line)
    return out


def write_result(
    name: str, title: str, loop: str, body: str, run_summary: str, keep: int = 6
) -> Path:
    """Write ``bench/results/<name>.md``: title, command, date, machine, then `body`.

    `run_summary` (one line of the headline figures) is added on top of the runs section,
    which keeps the summaries of the `keep` - 1 previous runs, so that repeated runs on a
    noisy machine can be compared without re-running them.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = [f"- {now}, {revision()}, `{command_line()}`, {resolve_loop(loop)}: {run_summary}"]
    runs += _earlier_runs(path)[: keep - 1]
    header = (
        f"# {title}\n\n- Command: `{command_line()}`\n- Date: {now}\n- Code: {revision()}\n"
        f"- Machine: {machine(loop)}\n\n"
    )
    text = header + body.rstrip() + f"\n\n{RUNS_HEADER}\n\n" + "\n".join(runs) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def admitted_per_second(
    log: Sequence[Sequence[Any]], bin_s: float, nbins: int, t0: float = 0.0
) -> tuple[list[list[float]], list[float]]:
    """Requests, input and output tokens answered 200 per second, in `nbins` bins of `bin_s`
    seconds from `t0` (the last bin takes what falls beyond), and the times of the 429s.

    `log` is a run's admission log: ``(time, class, input tokens, output tokens, status)``.
    """
    series = [[0.0] * nbins for _ in range(3)]
    refused = []
    for t, _cls, inp, outp, status in log:
        b = min(nbins - 1, int((t - t0) / bin_s))
        if status == 200:
            for k, v in enumerate((1, inp, outp)):
                series[k][b] += v / bin_s
        elif status == 429:
            refused.append(t - t0)
    return series, refused


def draw_admitted(
    ax: Any,
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    color: str,
    rate: float,
    limit_label: str,
    marks: Sequence[tuple[float, str, str]],
    bin_s: float,
    refused: Sequence[float],
) -> None:
    """One panel: `ys` admitted per second as stairs against the `rate` line, a dotted
    vertical line per ``(x, color, label)`` of `marks`, and a tick at each 429."""
    ax.stairs(ys, xs, color=color, lw=1.2, label="admitted")
    ax.axhline(rate, color="black", ls="--", lw=1, label=limit_label)
    for x, mark_color, label in marks:
        ax.axvline(x, color=mark_color, ls=":", lw=1, label=label)
    # the first bin holds the full bucket's burst: clip it, and say how high it is
    top = 3.0 * rate
    ax.set_ylim(0, top)
    if ys[0] > top:
        ax.annotate(
            f"burst ↑ {ys[0] * bin_s:,.0f} in {bin_s:g} s",
            (bin_s, top * 0.93),
            fontsize=7,
            va="top",
        )
    if refused:
        ax.plot(refused, [top * 0.02] * len(refused), "|", color="red", ms=10, label="429")
