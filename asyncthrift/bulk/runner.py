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
import sys
import time
from collections.abc import AsyncGenerator, Callable
from typing import TextIO

from ..client.thrift import Thrift
from .config import BulkConfig
from .idset import ABSENT, IdTable
from .journal import DONE, ERRORED, Journal, errored_line, succeeded_line
from .outcomes import Failure, failure_of, key_refused_advice
from .progress import ProgressBar, Sample
from .reader import BadLine, Item, count_lines, iter_lines, parse_line
from .report import EXIT_USAGE, BulkReport, retry_hint, summary
from .sampling import sample_client
from .signals import signals_to
from .wire import FLIGHT, Flight, make_http_client

__all__ = ["EXIT_USAGE", "BulkConfig", "BulkReport", "register_batch_mode", "run_bulk"]

#: Table states beside `DONE` and `ERRORED`: seen in this run's input (and already done
#: before, or not).
_SEEN = 2
_DONE_SEEN = 3

#: Bad-line and failure reports printed before the runner only counts them.
_MAX_REPORTS = 200

#: Lines skipped or classified between two yields to the event loop, so a resume that
#: skips a million done lines still lets results, signals and the progress line through.
_YIELD_EVERY = 512


class _Run:
    """One run's state; `run_bulk` is its only user."""

    def __init__(self, config: BulkConfig, client: Thrift, stderr: TextIO) -> None:
        self.config = config
        self.client = client
        self.stderr = stderr
        self.report = BulkReport()
        self.table = IdTable()
        self.journal = Journal(config.output)
        self.flights: dict[asyncio.Task[None], Flight] = {}
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

    async def read_items(self) -> AsyncGenerator[tuple[int, Item], None]:
        """The input's well-formed lines in order, as (line number, item); blank and bad
        lines are counted (and bad ones reported) here. Stops when the run is stopping.
        Both feeders (plain and ``--batch``) read through this; close it with
        ``contextlib.aclosing`` so the file is closed when a feeder returns early."""
        report = self.report
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
                yield lineno, parsed

    async def feed(self) -> None:
        """Read the input, classify each line, and start a task per new request."""
        report = self.report
        table = self.table
        async with contextlib.aclosing(self.read_items()) as items:
            async for lineno, parsed in items:
                if not self.claim(lineno, parsed.custom_id, table.get(parsed.custom_id)):
                    continue
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
                flight = Flight(parsed)
                task = asyncio.create_task(self.one(flight), name=f"bulk:{parsed.custom_id}")
                self.flights[task] = flight
                task.add_done_callback(self.forget)

    #: table states that mean "this id was met earlier in this input"
    _duplicates: frozenset[int] = frozenset({_SEEN, _DONE_SEEN})

    def claim(self, lineno: int, cid: str, state: int) -> bool:
        """Whether the line with id `cid` (table `state`) is to be sent now; a duplicate or
        an id already answered (errored too, without ``--retry-errored``) is counted, done."""
        report = self.report
        if state in self._duplicates:
            report.duplicates += 1
            self.done += 1
            self.report_line(lineno, f"duplicate custom_id {cid!r} skipped (the first stands)")
            return False
        if state == DONE or (state == ERRORED and not self.config.retry_errored):
            self.table.set(cid, _DONE_SEEN)
            report.already_done += 1
            report.already_errored += state == ERRORED
            self.done += 1
            return False
        assert state in (ABSENT, ERRORED)
        report.retried += state == ERRORED
        self.table.set(cid, _SEEN)
        return True

    def stopping(self) -> bool:
        return self.report.interrupted_by is not None or self.report.fatal is not None

    def forget(self, task: asyncio.Task[None]) -> None:
        self.flights.pop(task, None)
        self.slots.release()
        if task.cancelled():
            self.report.abandoned += 1

    # -- one request ------------------------------------------------------------------------

    async def one(self, flight: Flight) -> None:
        """Run one request to a result line (or to a reported transient failure)."""
        FLIGHT.set(flight)
        item = flight.item
        try:
            message = await self.client.messages.create(**item.params, priority=item.priority)
        except Exception as exc:  # what it means for the line: `outcomes.failure_of`
            self.failed(item, failure_of(exc))
        else:
            self.write(item, succeeded_line(item.custom_id, message.to_dict(mode="json")))
            self.report.succeeded += 1

    def failed(self, item: Item, failure: Failure) -> None:
        """`item`'s request failed: an errored line, a report (a rerun retries it), or the
        run stops (the key is refused)."""
        if failure.kind == "key_refused":
            what = f"{failure.status} {failure.error_type}: {failure.text}"
            self.key_refused(failure.status or 401, what)
        elif failure.kind == "transient":
            self.transient(item, failure.text)
        else:
            self.write_errored(
                item,
                failure.error_type,
                failure.text,
                status=failure.status,
                request_id=failure.request_id,
            )

    def write(self, item: Item, line: bytes) -> None:
        try:
            self.journal.append(line)
        except OSError as exc:
            self.fail(f"cannot write {self.config.output}: {exc}")
            return
        self.done += 1
        self.finished += 1

    def write_errored(
        self,
        item: Item,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        line = errored_line(
            item.custom_id, error_type, message, status=status, request_id=request_id
        )
        self.write(item, line)
        self.report.errored += 1
        self.report.error_types[error_type] += 1

    def key_refused(self, status: int, what: str) -> None:
        """A 401/403: the key, not the line, is the problem. Stop; write nothing for it."""
        self.report.abandoned += 1  # no result line: the rerun with a good key sends it
        if self.report.fatal is None:
            self.report.fatal_exit_code = EXIT_USAGE
        self.fail(key_refused_advice(status, what, self.config.api_key_env))

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
        return sample_client(
            self.client,
            self.config.limits,
            done=self.done,
            total=self.total,
            finished=self.finished,
            in_flight=len(self.flights),
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
                async with signals_to(self.interrupt, enabled=self.config.handle_signals):
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
        http_client = make_http_client()
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
