"""The bulk runner: a JSONL file of Batches-shaped requests in, one result line per id out.

Shape of a run:

1. The output journal is locked, repaired and scanned: ids it holds are done (resume).
2. A feeder reads the input one line at a time, classifies it (`reader.parse_line`), and
   starts one task per new request, never more than `max_in_flight` at once; nothing else
   of the input is held in memory.
3. Each task awaits ``Thrift.messages.create``: the client's scheduler does all the pacing,
   so the runner needs no rate logic of its own. Its result line is written the moment it
   finishes.
4. Ctrl-C or SIGTERM stops the feeder and cancels the tasks whose request never went on the
   wire (that costs nothing: they were only queued); requests already sent are finished and
   written, so their tokens are not wasted. A second signal abandons them too.

What gets a result line: every answer, and every error that repeating cannot fix (a 400, a
request too large for the limits, invalid params). A failure that a later attempt could fix
(429, 5xx, a dropped connection) after the client's own retries is *not* written, so running
the same command again retries it instead of keeping a stale error forever. A 401/403 is
about the run, not the line: the first one stops the run (exit 2) and writes nothing for it.
With ``retry_errored`` the ids whose recorded result is errored are sent again; the new
result is appended after the old one and supersedes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anthropic

from ..budget import LocalBudget
from ..client import Thrift
from ..errors import RequestTooLarge, ThriftError
from ..limits import Limits, LimitsSpec
from ..retry import classify
from ..stats import Stats
from .idset import ABSENT, IdTable
from .journal import DONE, ERRORED, Journal, errored_line, succeeded_line
from .progress import ProgressBar, Sample, format_duration, human
from .reader import BadLine, Item, count_lines, iter_lines, parse_line

__all__ = ["BulkConfig", "BulkReport", "run_bulk"]

#: Table states beside `DONE` and `ERRORED`: seen in this run's input (and already done
#: before, or not).
_SEEN = 2
_DONE_SEEN = 3

#: Statuses that say the key itself is unusable: every other request would get the same.
_KEY_REFUSED = frozenset({401, 403})

#: Bad-line and failure reports printed before the runner only counts them.
_MAX_REPORTS = 200

#: Lines skipped or classified between two yields to the event loop, so a resume that
#: skips a million done lines still lets results, signals and the progress line through.
_YIELD_EVERY = 512

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class BulkConfig:
    """Everything one run needs; `cli.run_command` builds it from the command line."""

    input: Path
    output: Path
    api_key: str | None = None
    base_url: str | None = None
    limits: LimitsSpec = None
    cache: str | None = None
    max_in_flight: int = 256
    mock: bool = False
    """Serve the run from an in-process `MockServer` enforcing the same limits."""
    mock_latency: float = 0.2
    quiet: bool = False
    progress_interval: float | None = None
    handle_signals: bool = True
    thrift_options: dict[str, Any] = field(default_factory=dict)
    retry_errored: bool = False
    """Send again the ids whose recorded result is errored, expired or canceled."""
    api_key_env: str | None = None
    """Where the key came from, for the message when the API refuses it."""
    batch: str | None = None
    """``"on"``: send through the Message Batches API (half price); ``"auto"``: do so when
    the input has at least `batch_threshold` lines and none is ``interactive``."""
    batch_size: int = 100_000
    """Requests per batch (at most the API's 100,000; fewer if 256 MB is reached first)."""
    batch_poll: float = 5.0
    """First interval between polls of open batches; it grows 1.5x up to `batch_poll_max`
    while nothing ends, and starts again when one does."""
    batch_poll_max: float = 60.0
    batch_grace: float = 30.0
    """How long after an unconfirmed create a batch may still appear in the list."""
    batch_threshold: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.max_in_flight, bool) or self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int >= 1, got {self.max_in_flight!r}")


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


class _Flight:
    """Per-request flag: has an HTTP request for it gone on the wire yet?"""

    __slots__ = ("item", "sent")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.sent = False


#: The request the current task is working for; read by the HTTP client's request hook.
#: Tasks the client starts on its behalf (shared in-flight calls) inherit it.
_FLIGHT: contextvars.ContextVar[_Flight] = contextvars.ContextVar("asyncthrift_bulk_flight")


async def _mark_sent(request: object) -> None:
    flight = _FLIGHT.get(None)
    if flight is not None:
        flight.sent = True


def _http_client() -> Any:
    """The SDK's aiohttp transport when aiohttp is installed, else its httpx default.

    The SDK recommends aiohttp for high concurrency, and it shows: httpx's pool scans every
    connection for each request, which with a few hundred in flight costs about as much CPU
    as everything else together. The request hook marks each request as sent (see `_Flight`).
    """
    hooks = {"request": [_mark_sent]}
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
    return anthropic.DefaultAioHttpClient(event_hooks=hooks)


def _display_budget(client: Thrift) -> LocalBudget | None:
    """The one budget of a single-key, single-class run (None when there are several)."""
    budgets = client.budgets()
    if len(budgets) == 1:
        (only,) = budgets.values()
        if len(only) == 1:
            return only[0]
    return None


def _display_limits(client: Thrift, configured: LimitsSpec) -> Limits | None:
    """The limits the progress line compares usage with (the live ones when known)."""
    b = _display_budget(client)
    if b is not None:
        caps = [None if bucket is None else bucket.capacity for bucket in b.buckets]
        if any(c is not None for c in caps):
            return Limits(caps[0], caps[1], caps[2], b.limits.period)
    return configured if isinstance(configured, Limits) else None


class _Run:
    """One run's state; `run_bulk` is its only user."""

    def __init__(self, config: BulkConfig, client: Thrift, stderr: TextIO) -> None:
        self.config = config
        self.client = client
        self.stderr = stderr
        self.report = BulkReport()
        self.table = IdTable()
        self.journal = Journal(config.output)
        self.flights: dict[asyncio.Task[None], _Flight] = {}
        self.slots = asyncio.Semaphore(config.max_in_flight)
        self.total: int | None = None
        self.done = 0
        self.finished = 0
        self.reports = 0
        self.progress: ProgressBar | None = None
        self.started = time.monotonic()

    # -- messages ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.message(text)
        else:
            print(text, file=self.stderr, flush=True)

    def report_line(self, lineno: int, text: str) -> None:
        """`IN.jsonl:LINE: text`, the format editors and grep understand; capped."""
        self.reports += 1
        if self.reports <= _MAX_REPORTS:
            self.say(f"{self.config.input}:{lineno}: {text}")
        elif self.reports == _MAX_REPORTS + 1:
            self.say(f"asyncthrift run: more than {_MAX_REPORTS} problems; counting the rest")

    # -- the feeder -------------------------------------------------------------------------

    async def feed(self) -> None:
        """Read the input, classify each line, and start a task per new request."""
        report = self.report
        table = self.table
        with contextlib.closing(iter_lines(self.config.input)) as lines:
            for lineno, raw in lines:
                if self.stopping():
                    return
                report.lines += 1
                if lineno % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                parsed = parse_line(lineno, raw)
                if parsed is None:
                    report.blank += 1
                    self.done += 1
                    continue
                if isinstance(parsed, BadLine):
                    report.bad_lines += 1
                    self.done += 1
                    self.report_line(lineno, f"{parsed.reason}; no result line written")
                    continue
                state = table.get(parsed.custom_id)
                if state in (_SEEN, _DONE_SEEN):
                    report.duplicates += 1
                    self.done += 1
                    self.report_line(
                        lineno,
                        f"duplicate custom_id {parsed.custom_id!r} skipped (the first stands)",
                    )
                    continue
                if state == DONE or (state == ERRORED and not self.config.retry_errored):
                    table.set(parsed.custom_id, _DONE_SEEN)
                    report.already_done += 1
                    report.already_errored += state == ERRORED
                    self.done += 1
                    continue
                assert state in (ABSENT, ERRORED)
                report.retried += state == ERRORED
                table.set(parsed.custom_id, _SEEN)
                if parsed.problem is not None:
                    self.report_line(
                        lineno, f"{parsed.problem}; errored result written for {parsed.custom_id!r}"
                    )
                    self.write_errored(parsed, "invalid_request_error", parsed.problem)
                    continue
                await self.slots.acquire()
                if self.stopping():
                    self.slots.release()
                    report.abandoned += 1  # read but never started: it stays to do
                    return
                flight = _Flight(parsed)
                task = asyncio.create_task(self.one(flight), name=f"bulk:{parsed.custom_id}")
                self.flights[task] = flight
                task.add_done_callback(self.forget)

    def stopping(self) -> bool:
        return self.report.interrupted_by is not None or self.report.fatal is not None

    def forget(self, task: asyncio.Task[None]) -> None:
        self.flights.pop(task, None)
        self.slots.release()
        if task.cancelled():
            self.report.abandoned += 1

    # -- one request ------------------------------------------------------------------------

    async def one(self, flight: _Flight) -> None:
        """Run one request to a result line (or to a reported transient failure)."""
        _FLIGHT.set(flight)
        item = flight.item
        try:
            message = await self.client.messages.create(**item.params, priority=item.priority)
        except anthropic.APIStatusError as exc:
            error_type = exc.type or f"http_{exc.status_code}"
            text = exc.api_message or str(exc)
            if exc.status_code in _KEY_REFUSED:
                self.key_refused(exc.status_code, f"{exc.status_code} {error_type}: {text}")
            elif classify(exc).retry:
                self.transient(item, f"{exc.status_code} {error_type}: {text}")
            else:
                self.write_errored(item, error_type, text)
        except anthropic.APIConnectionError as exc:
            self.transient(item, f"{type(exc).__name__}: {exc}")
        except RequestTooLarge as exc:
            self.write_errored(item, "request_too_large", str(exc))
        except ThriftError as exc:  # QueueFull, DeadlineExceeded, BudgetExceeded: not final
            self.transient(item, f"{type(exc).__name__}: {exc}")
        except (TypeError, ValueError) as exc:  # the client's and the SDK's argument checks
            self.write_errored(item, "invalid_request_error", str(exc))
        except Exception as exc:  # a bug must not stop the other requests, nor be hidden
            self.transient(item, f"unexpected {type(exc).__name__}: {exc}")
        else:
            self.write(item, succeeded_line(item.custom_id, message.to_dict(mode="json")))
            self.report.succeeded += 1

    def write(self, item: Item, line: bytes) -> None:
        try:
            self.journal.append(line)
        except OSError as exc:
            self.fail(f"cannot write {self.config.output}: {exc}")
            return
        self.done += 1
        self.finished += 1

    def write_errored(self, item: Item, error_type: str, message: str) -> None:
        self.write(item, errored_line(item.custom_id, error_type, message))
        self.report.errored += 1
        self.report.error_types[error_type] += 1

    def key_refused(self, status: int, what: str) -> None:
        """A 401/403: the key, not the line, is the problem. Stop; write nothing for it."""
        self.report.abandoned += 1  # no result line: the rerun with a good key sends it
        env = self.config.api_key_env
        where = f"${env}" if env else "the API key"
        if status == 401:
            fix = (
                f"the API refused the key ({what}). Check {where}"
                + (" (or choose another variable with --api-key-env NAME)" if env else "")
                + " and the --base-url it belongs to"
            )
        else:
            fix = (
                f"the key is not allowed to make these requests ({what}). Use a key with "
                "access to this model and workspace"
            )
        if self.report.fatal is None:
            self.report.fatal_exit_code = EXIT_USAGE
        self.fail(
            f"{fix}, then run the same command again: no result line was written for "
            "refused requests"
        )

    def transient(self, item: Item, why: str) -> None:
        self.report.transient += 1
        self.done += 1
        self.finished += 1
        self.report_line(item.lineno, f"{item.custom_id!r} not done ({why}); rerun to retry it")

    # -- stopping ---------------------------------------------------------------------------

    def interrupt(self, signame: str) -> None:
        """First signal: drain what is on the wire; second: abandon everything."""
        report = self.report
        if report.interrupted_by is None:
            report.interrupted_by = signame
            unsent = [task for task, flight in self.flights.items() if not flight.sent]
            for task in unsent:
                task.cancel()
            sent = len(self.flights) - len(unsent)
            again = "Ctrl-C" if signame == "SIGINT" else "the signal"
            self.say(
                f"asyncthrift run: {signame}: stopping. Finishing {sent} request(s) already "
                f"sent so their answers are kept ({again} again to abandon them)"
            )
        else:
            for task in self.flights:
                task.cancel()
            self.say(f"asyncthrift run: {signame} again: abandoning {len(self.flights)} request(s)")

    def fail(self, why: str) -> None:
        """A fatal error (e.g. the output cannot be written): stop everything now."""
        if self.report.fatal is None:
            self.report.fatal = why
            for task in self.flights:
                task.cancel()

    # -- progress ---------------------------------------------------------------------------

    def sample(self) -> Sample:
        s = self.client.stats()
        budget = _display_budget(self.client)
        return Sample(
            t=time.monotonic(),
            done=self.done,
            total=self.total,
            finished=self.finished,
            requests=s.upstream_calls,
            input_tokens=s.input_tokens + s.cache_creation_input_tokens,
            output_tokens=s.output_tokens,
            rate_limited=s.rate_limited,
            in_flight=len(self.flights),
            limits=_display_limits(self.client, self.config.limits),
            refilled=None if budget is None else budget.refilled(self.client.now()),
        )

    def make_progress(self) -> ProgressBar:
        return ProgressBar(
            self.stderr,
            self.sample,
            tty=self.stderr.isatty(),
            interval=self.config.progress_interval,
        )

    async def count_total(self) -> None:
        self.total = await asyncio.to_thread(count_lines, self.config.input)

    # -- the whole run ----------------------------------------------------------------------

    async def run(self) -> BulkReport:
        report = self.report
        state = self.journal.open(self.table, source=self.config.input)
        try:
            report.repaired_bytes = state.repaired_bytes
            if state.repaired_bytes:
                self.say(
                    f"asyncthrift run: {self.config.output}: cut a torn last line "
                    f"({state.repaired_bytes} bytes) left by an interrupted run; it will be redone"
                )
            for lineno in state.unreadable[:10]:
                self.say(f"{self.config.output}:{lineno}: not a result line; left as it is")
            if state.results and not self.config.quiet:
                self.say(
                    f"asyncthrift run: resuming: {state.results:,} results already in "
                    f"{self.config.output}"
                )
            counter = asyncio.create_task(self.count_total())
            if not self.config.quiet:
                self.progress = self.make_progress()
                self.progress.start()
            try:
                async with self.signals():
                    try:
                        await self.feed()
                    finally:
                        while self.flights:
                            await asyncio.wait(list(self.flights))
            finally:
                if self.progress is not None:
                    await self.progress.stop()
                    self.progress = None
                if not counter.done():
                    counter.cancel()
        finally:
            self.journal.close()
        report.elapsed = time.monotonic() - self.started
        report.stats = self.client.stats()
        return report

    @contextlib.asynccontextmanager
    async def signals(self) -> AsyncIterator[None]:
        if not self.config.handle_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.interrupt, sig.name)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                # (uvloop raises ValueError there), or Windows
                pass
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


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


#: ``--batch``'s chooser and run class, registered by `batchmode` (which the package imports:
#: it subclasses `_Run`, so this module cannot import it).
_BATCH_MODE: dict[str, tuple[Callable[[BulkConfig], bool], type[_Run]]] = {}


def register_batch_mode(choose: Callable[[BulkConfig], bool], run: type[_Run]) -> None:
    _BATCH_MODE["run"] = (choose, run)


async def run_bulk(config: BulkConfig, *, stderr: TextIO | None = None) -> BulkReport:
    """Run the whole job described by `config`; see the module docstring."""
    err = stderr if stderr is not None else sys.stderr
    async with contextlib.AsyncExitStack() as stack:
        base_url = config.base_url
        api_key = config.api_key
        if config.mock:
            from ..mock import MockServer

            mock = await stack.enter_async_context(
                MockServer(limits=config.limits, latency=config.mock_latency)
            )
            base_url = mock.base_url
            api_key = api_key or "mock-key"
        http_client = _http_client()
        stack.push_async_callback(http_client.aclose)
        options = dict(config.thrift_options)
        sdk_options = dict(options.pop("sdk_options", None) or {})
        sdk_options.setdefault("http_client", http_client)
        client = await stack.enter_async_context(
            Thrift(
                api_key=api_key,
                base_url=base_url,
                limits=config.limits,
                cache=config.cache,
                sdk_options=sdk_options,
                **options,
            )
        )
        batch = _BATCH_MODE.get("run")
        if (
            config.batch is not None
            and batch is not None
            and await asyncio.to_thread(batch[0], config)
        ):
            report = await batch[1](config, client, err).run()
        else:
            report = await _Run(config, client, err).run()
    if not config.quiet or not report.complete:
        print(summary(config, report), file=err, flush=True)
    elif (hint := retry_hint(config, report)) is not None:  # quiet, but there is work left
        print(hint, file=err, flush=True)
    return report
