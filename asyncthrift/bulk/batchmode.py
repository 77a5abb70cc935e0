"""``asyncthrift run --batch``: the same input and output, sent through the Message Batches API.

Half the price, for work that can wait. The output file is the same journal as a plain run
(`journal.Journal`); beside it, ``OUT.jsonl.batches`` (the *ledger*) records every batch the
run creates, so that a run killed at any point and started again never submits a line twice:

1. **intent** ``{"op": "intent", "token", "at", "n", "ids"}``: written and fsynced *before*
   the create request goes out, with the custom_ids of the chunk;
2. **created** ``{"op": "created", "token", "batch"}``: as soon as the create answers;
3. **collected** ``{"op": "collected", "batch"}``: once every result of the batch is in the
   output (results are appended as they are read, one ``write()`` each);
4. **gone** ``{"op": "gone", "token"}``: an intent shown never to have become a batch.

On start, the ids of every created-but-not-collected batch are *submitted*: skipped by the
reader, collected by the poller. An intent without its ``created`` record (killed after the
create went out, before its answer arrived) is resolved by listing the key's batches (newest
first) back to a few minutes before the intent: an unclaimed batch created after the intent
with the same number of requests is it; if several match, the one whose results carry the
intent's custom_ids (compared once they end). If none appears within ``batch_grace``
seconds of the intent, the create never reached the API: the intent is marked gone and its
lines are submitted again. See ``docs/bulk.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Final, TextIO

import anthropic
import orjson
from anthropic.types.messages import MessageBatch

from ..client.thrift import Thrift
from ..pipeline.retry import classify
from .batchprogress import BatchProgress
from .journal import DONE, RETRYABLE_RESULTS
from .ledger import BatchLedger, Intent, ledger_path
from .outcomes import KEY_REFUSED
from .progress import ProgressBar
from .reader import Item, iter_lines, parse_line
from .runner import (
    _DONE_SEEN,
    _SEEN,
    BulkConfig,
    BulkReport,
    _Run,
    register_batch_mode,
)

__all__ = ["BatchLedger", "BatchRun", "choose_batch"]

#: Table states of batch mode (beside runner's DONE, ERRORED, _SEEN, _DONE_SEEN).
SUBMITTED: Final = 5
"""In a batch created by an earlier run, not yet collected; the reader has not met it."""
SUBMITTED_SEEN: Final = 6
"""The same, and the reader met it."""
COLLECTED: Final = 7
"""Its result was written by this run before the reader met it."""

_CUSTOM_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: How far before an intent's (client) time a batch's (server) created_at may be.
_CLOCK_SLACK: Final = 300.0
_BATCH_BYTES: Final = 256 * 1024 * 1024 - 64 * 1024


# -- choosing ----------------------------------------------------------------------------------


def choose_batch(config: BulkConfig) -> bool:
    """``--batch auto``: the Batches API when the input is large and no line is urgent."""
    if config.batch != "auto":
        return config.batch == "on"
    lines = 0
    for lineno, raw in iter_lines(config.input):
        if b'"priority"' in raw:
            parsed = parse_line(lineno, raw)
            if isinstance(parsed, Item) and parsed.priority in ("interactive", 0):
                return False
        lines += 1
    return lines >= config.batch_threshold


# -- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """A batch of this run (or resumed) until its results are in the output."""

    id: str
    n: int
    status: str = "in_progress"
    counts: dict[str, int] = field(default_factory=dict)  # the API's request_counts, last poll
    opened: float | None = None
    """`time.monotonic()` when this run created it (None: created by an earlier run)."""


class BatchRun(_Run):
    """A `_Run` whose requests go through the Message Batches API."""

    _duplicates = frozenset({_SEEN, _DONE_SEEN, SUBMITTED_SEEN})

    def __init__(self, config: BulkConfig, client: Thrift, stderr: TextIO) -> None:
        super().__init__(config, client, stderr)
        self.ledger = BatchLedger(ledger_path(config.output))
        self.open: dict[str, _Open] = {}
        self.created = 0
        self.submitted = 0
        self.feeding = True
        self.wake = asyncio.Event()
        self.resubmitted_gone = 0
        # how long this run's batches took to end, summed, and their requests: the pace the
        # ETA of the open ones is estimated from (see `batchprogress.eta`)
        self.ended_seconds = 0.0
        self.ended_requests = 0

    # -- resuming ---------------------------------------------------------------------------

    async def resume(self) -> None:
        """Resolve unconfirmed intents, then mark the ids of open batches submitted."""
        for intent in self.ledger.pending():
            await self.resolve(intent)
        table = self.table
        for intent in self.ledger.open_batches():
            assert intent.batch is not None
            self.open[intent.batch] = _Open(intent.batch, len(intent.ids))
            for custom_id in intent.ids:
                if table.get(custom_id) != DONE:
                    table.set(custom_id, SUBMITTED)
        if self.open:
            self.say(
                f"asyncthrift run: resuming {len(self.open)} batch(es) already submitted "
                f"({sum(b.n for b in self.open.values()):,} requests)"
            )

    async def resolve(self, intent: Intent) -> None:
        """Find the batch of an intent whose create's answer was never journaled."""
        wanted = set(intent.ids)
        claimed = set(self.ledger.by_batch)
        while True:
            matches: list[MessageBatch] = []
            async for b in self.client.batches.list(limit=100):
                created = b.created_at.timestamp()
                if created < intent.at - _CLOCK_SLACK:
                    break
                if b.id in claimed:
                    continue
                counts = b.request_counts
                total = (
                    counts.processing
                    + counts.succeeded
                    + counts.errored
                    + counts.canceled
                    + counts.expired
                )
                if total == len(intent.ids):
                    matches.append(b)
            if len(matches) > 1:
                matches = [b for b in matches if await self._holds(b.id, wanted)]
            if matches:
                batch_id = matches[-1].id  # the oldest match after the intent
                self.ledger.record(
                    {"op": "created", "token": intent.token, "batch": batch_id, "found": True}
                )
                self.say(
                    f"asyncthrift run: found batch {batch_id} created by an interrupted run "
                    f"({len(intent.ids):,} requests); polling it, not submitting them again"
                )
                return
            if time.time() - intent.at >= self.config.batch_grace:
                self.ledger.record({"op": "gone", "token": intent.token})
                self.resubmitted_gone += len(intent.ids)
                return
            await asyncio.sleep(min(1.0, self.config.batch_poll))

    async def _holds(self, batch_id: str, wanted: set[str]) -> bool:
        """Whether the batch's results carry exactly `wanted` (waits for it to end)."""
        b = await self.client.batches.wait(batch_id, poll=self.config.batch_poll)
        del b
        decoder = await self.client.messages.batches.results(batch_id)
        got = {r.custom_id async for r in decoder}
        return got == wanted

    # -- feeding ----------------------------------------------------------------------------

    async def feed(self) -> None:
        self.ledger.open()
        await self.resume()
        poller = asyncio.create_task(self.poll(), name="asyncthrift-batch-poller")
        try:
            await self._feed()
        finally:
            self.feeding = False
            self.wake.set()
        try:
            await poller
        except asyncio.CancelledError:
            if not self.stopping():
                raise

    async def _feed(self) -> None:
        table = self.table
        chunk: list[Item] = []
        size = 0
        limit = min(self.config.batch_size, 100_000)
        async with contextlib.aclosing(self.read_items()) as items:
            async for lineno, parsed in items:
                cid = parsed.custom_id
                state = table.get(cid)
                if state == COLLECTED:
                    table.set(cid, _DONE_SEEN)
                    continue
                if state == SUBMITTED:
                    table.set(cid, SUBMITTED_SEEN)
                    continue
                if not self.claim(lineno, cid, state):
                    continue
                problem = parsed.problem
                if problem is None and not _CUSTOM_ID.match(cid):
                    problem = (
                        "custom_id must be 1 to 64 letters, digits, '_' or '-' for the "
                        "Message Batches API"
                    )
                if problem is not None:
                    self.report_line(lineno, f"{problem}; errored result written for {cid!r}")
                    self.write_errored(parsed, "invalid_request_error", problem)
                    continue
                n = len(orjson.dumps(parsed.params)) + len(cid) + 32
                if chunk and (len(chunk) >= limit or size + n > _BATCH_BYTES):
                    await self.submit(chunk)
                    chunk, size = [], 0
                    if self.stopping():
                        return
                chunk.append(parsed)
                size += n
        if chunk and not self.stopping():
            await self.submit(chunk)

    async def submit(self, chunk: list[Item]) -> None:
        """Journal the intent, create the batch, journal its id."""
        token = secrets.token_hex(8)
        ids = [item.custom_id for item in chunk]
        self.ledger.record({"op": "intent", "token": token, "at": time.time(), "ids": ids})
        requests = [{"custom_id": item.custom_id, "params": item.params} for item in chunk]
        try:
            batch = await self.client.batches.create_one(requests)
        except anthropic.APIStatusError as exc:
            what = f"{exc.status_code} {exc.type or ''}: {exc.api_message or exc}"
            if exc.status_code in KEY_REFUSED:
                self.ledger.record({"op": "gone", "token": token})
                self.key_refused(exc.status_code, what)
            elif classify(exc).retry:  # it may exist: the next run resolves the intent
                self.fail(f"creating a batch failed ({what}); run the same command again")
            else:  # refused as a whole: never created
                self.ledger.record({"op": "gone", "token": token})
                for item in chunk:
                    self.write_errored(
                        item,
                        exc.type or f"http_{exc.status_code}",
                        what,
                        status=exc.status_code,
                        request_id=exc.request_id,
                    )
            return
        except anthropic.APIConnectionError as exc:
            self.fail(f"creating a batch failed ({exc}); run the same command again")
            return
        self.ledger.record({"op": "created", "token": token, "batch": batch.id})
        self.created += 1
        self.submitted += len(chunk)
        self.open[batch.id] = _Open(batch.id, len(chunk), opened=time.monotonic())
        self.wake.set()

    # -- polling and collecting ---------------------------------------------------------------

    async def poll(self) -> None:
        cfg = self.config
        interval = cfg.batch_poll
        while True:
            if self.stopping():
                return
            if not self.open:
                if not self.feeding:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            ended_any = False
            for bid in list(self.open):
                if self.stopping():
                    return
                try:
                    batch = await self.client.batches.retrieve(bid)
                except anthropic.APIStatusError as exc:
                    if exc.status_code == 404:  # deleted or too old: its lines are lost
                        self.say(f"asyncthrift run: batch {bid} no longer exists: {exc}")
                        self.drop(bid)
                        continue
                    raise
                entry = self.open[bid]
                entry.status = batch.processing_status
                entry.counts = batch.request_counts.model_dump()
                if batch.processing_status == "ended":
                    self.learn(entry)
                    await self.collect(bid)
                    ended_any = True
            interval = cfg.batch_poll if ended_any else min(cfg.batch_poll_max, interval * 1.5)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.wake.wait()

    def learn(self, entry: _Open) -> None:
        """An ended batch's duration (seen at this poll) joins the pace of the ETA."""
        if entry.opened is not None and entry.n > 0:
            self.ended_seconds += time.monotonic() - entry.opened
            self.ended_requests += entry.n

    def drop(self, bid: str) -> None:
        self.open.pop(bid, None)
        self.ledger.record({"op": "collected", "batch": bid, "lost": True})

    async def collect(self, bid: str) -> None:
        """Append every result of an ended batch not already in the output; then journal."""
        table = self.table
        report = self.report
        async for response in self.client.batches.results(bid):
            cid = response.custom_id
            state = table.get(cid)
            if state in (DONE, _DONE_SEEN, COLLECTED):
                continue  # written before a kill mid-collection
            line = orjson.dumps(response.to_dict(mode="json"), option=orjson.OPT_APPEND_NEWLINE)
            try:
                self.journal.append(line)
            except OSError as exc:
                self.fail(f"cannot write {self.config.output}: {exc}")
                return
            kind = response.result.type
            if kind == "succeeded":
                report.succeeded += 1
            else:
                report.errored += 1
                report.error_types[kind if kind in RETRYABLE_RESULTS else "errored"] += 1
            self.finished += 1
            self.done += 1
            table.set(cid, COLLECTED if state == SUBMITTED else _DONE_SEEN)
        self.ledger.record({"op": "collected", "batch": bid})
        self.open.pop(bid, None)

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> BulkReport:
        try:
            return await super().run()
        finally:
            self.ledger.close()

    def make_progress(self) -> ProgressBar:
        return BatchProgress(
            self, self.stderr, tty=self.stderr.isatty(), interval=self.config.progress_interval
        )


register_batch_mode(choose_batch, BatchRun)
