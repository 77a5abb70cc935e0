"""What a bulk run did: `BulkReport`, its exit status, and the closing summary it prints.

The runner and the batch mode fill a report line by line of the input; this module says
what the counts mean once the run is over (complete or not, which exit code, what to do
next), apart from how they were counted.
"""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass, field

from ..core.stats import Stats
from .config import BulkConfig
from .progress import format_duration, human

__all__ = ["EXIT_INCOMPLETE", "EXIT_OK", "EXIT_USAGE", "BulkReport", "retry_hint", "summary"]

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2


@dataclass(slots=True)
class BulkReport:
    """What one run did, line by line of the input; `exit_code` sums it up."""

    lines: int = 0
    blank: int = 0
    succeeded: int = 0
    errored: int = 0
    already_done: int = 0
    bad_lines: int = 0
    duplicates: int = 0
    transient: int = 0
    """Requests that failed with retryable errors after every retry: no line, rerun them."""
    abandoned: int = 0
    """Requests not finished because the run was interrupted: no line, rerun them."""
    repaired_bytes: int = 0
    interrupted_by: str | None = None
    fatal: str | None = None
    fatal_exit_code: int = EXIT_INCOMPLETE
    """The exit status when `fatal` is set: 2 when the API refused the key (fix it, rerun)."""
    retried: int = 0
    """Lines whose errored result was sent again (``retry_errored``)."""
    already_errored: int = 0
    """Of `already_done`, the lines whose recorded result is errored (not sent again)."""
    elapsed: float = 0.0
    error_types: Counter[str] = field(default_factory=Counter)
    stats: Stats | None = None

    @property
    def complete(self) -> bool:
        """True when every input line has a result line (errors included)."""
        return (
            self.fatal is None
            and self.interrupted_by is None
            and self.bad_lines == 0
            and self.transient == 0
            and self.abandoned == 0
        )

    @property
    def exit_code(self) -> int:
        if self.complete:
            return EXIT_OK
        if self.fatal is not None:
            return self.fatal_exit_code
        if self.fatal is None and self.interrupted_by == "SIGINT":
            return 128 + signal.SIGINT
        if self.fatal is None and self.interrupted_by == "SIGTERM":
            return 128 + signal.SIGTERM
        return EXIT_INCOMPLETE


def retry_hint(config: BulkConfig, report: BulkReport) -> str | None:
    """What to do about errored results, when the run kept some and was not retrying them."""
    errored = report.errored + report.already_errored
    if not errored or config.retry_errored or report.fatal is not None:
        return None
    return (
        f"asyncthrift run: {errored:,} line(s) have an errored result (see {config.output}); "
        f"once fixed in {config.input}, run the same command with --retry-errored to send "
        "them again"
    )


def summary(config: BulkConfig, report: BulkReport) -> str:
    """The closing lines: what was done, what it cost, and what to do next if incomplete."""
    r = report
    done_now = r.succeeded + r.errored
    lines = [
        f"asyncthrift run: {r.lines:,} lines in {format_duration(r.elapsed)}: "
        f"{r.succeeded:,} succeeded, {r.errored:,} errored, {r.already_done:,} already done"
        + (f" ({r.already_errored:,} errored)" if r.already_errored else "")
        + (f", {r.retried:,} errored sent again" if r.retried else "")
        + (f", {r.bad_lines:,} bad" if r.bad_lines else "")
        + (f", {r.duplicates:,} duplicate" if r.duplicates else "")
        + (f", {r.transient:,} failed (retryable)" if r.transient else "")
        + (f", {r.abandoned:,} not done" if r.abandoned else "")
    ]
    s = r.stats
    if s is not None and s.requests:
        rate = done_now / r.elapsed if r.elapsed > 0 else 0.0
        lines.append(
            f"  {rate:,.1f} results/s · upstream calls {s.upstream_calls:,} "
            f"(retries {s.retries:,}, 429s {s.rate_limited:,}) · tokens in "
            f"{human(s.input_tokens + s.cache_creation_input_tokens)} out {human(s.output_tokens)}"
            f" · ${s.cost_usd:,.2f} · latency p50 {s.latency_p50:.2f}s p99 {s.latency_p99:.2f}s"
        )
    if s is not None and s.batch_requests + s.batch_results:
        lines.append(
            f"  Message Batches: {s.batch_requests:,} requests submitted, {s.batch_results:,} "
            f"results read · ${s.batch_cost_usd:,.2f} at the batch price (half)"
        )
    if r.error_types:
        kinds = ", ".join(f"{k} {v:,}" for k, v in r.error_types.most_common())
        lines.append(f"  errored: {kinds}")
    hint = retry_hint(config, report)
    if hint is not None:
        lines.append(hint)
    if r.fatal is not None:
        lines.append(f"asyncthrift run: stopped: {r.fatal}")
    elif r.interrupted_by is not None:
        lines.append(
            f"asyncthrift run: interrupted by {r.interrupted_by}; {config.output} holds every "
            "finished result. Run the same command again to do the rest."
        )
    elif not r.complete:
        why = []
        if r.bad_lines:
            why.append(f"{r.bad_lines:,} bad line(s) have no result line (fix the input)")
        if r.transient:
            why.append(f"{r.transient:,} request(s) failed with retryable errors (run again)")
        lines.append("asyncthrift run: incomplete: " + "; ".join(why))
    return "\n".join(lines)
