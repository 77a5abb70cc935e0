"""Structured logging that never leaks an API key.

`configure_logging()` puts one handler on asyncthrift's logger (and, by default, the SDK's
and its HTTP library's) that writes one JSON object per line and redacts secrets from the
message, the arguments, every extra field and the traceback. Redaction is by pattern
(Anthropic keys ``sk-ant-...``, ``x-api-key``/``Authorization`` header values) plus any
exact strings you register, so a key that reaches a log by an unexpected path (an exception
message, a repr, a header dump) is still masked. `RequestLog` logs one line per finished
call with its outcome and timings, for services that prefer logs to metrics.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any, Final

import orjson

from ..client._observers import Observer, RequestRecord, outcome_of

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "RequestLog",
    "configure_logging",
    "record_fields",
    "redact",
]

REDACTED: Final = "<redacted>"

_PATTERNS: Final = (
    # Anthropic API and admin keys
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}"),
    # header values in dumps: x-api-key: ..., "x-api-key": "...", Authorization: Bearer ...
    re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+"),
)

#: Attributes every LogRecord has; anything else was passed as ``extra=``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with API keys, auth header values and each of `secrets` masked.

    The key patterns go first and the exact secrets after them, longest first: replacing a
    short configured secret first could cut an ``sk-ant-...`` key (or a longer secret that
    contains it) into pieces no pattern recognises, and leave the rest of it in the text.
    """
    text = _PATTERNS[0].sub(REDACTED, text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(repr(value), secrets)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it.

    The message is rendered with its arguments first (a key could hide in an argument's
    repr), then redacted; extras and the exception text are redacted too. Attach it to a
    handler: a logger's own filters do not see records propagated from child loggers.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        record.msg = redact(record.getMessage(), secrets)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _scrub(value, secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
            record.exc_info = None  # formatted (and redacted) already
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as a JSON line's fields: time (UTC, ms), level, logger, message, and every
    ``extra=`` attribute (the one shape `JsonFormatter` and the gateway's access line share)."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and key not in out:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out = record_fields(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=repr).decode()


def configure_logging(
    level: int | str = logging.INFO,
    *,
    json: bool = True,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
    loggers: Sequence[str] = ("asyncthrift", "anthropic", "httpx2", "httpx"),
) -> logging.Handler:
    """Send `loggers` to `stream` (default stderr) through a redacting handler; return it.

    `secrets`: exact strings to mask besides the built-in patterns (your API keys, say).
    The loggers stop propagating to the root logger, so no other handler prints an
    unredacted copy. Idempotent per logger: a handler installed by an earlier call is
    replaced.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if json else plain)
    handler.set_name("asyncthrift")
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "asyncthrift"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler


class RequestLog(Observer):
    """Logs one structured line per finished call (``asyncthrift.requests`` logger).

    Fields: ``client``, ``kind``, ``model``, ``lane``, ``outcome``, ``attempts``,
    ``duration_ms``, ``queue_ms``. Successes at `level`, failures at WARNING. No prompt, no
    answer, no key.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("asyncthrift.requests")
        self.level = level

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        rec.data[self] = rec.data.get(self, 0.0) + waited

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None:
        outcome = outcome_of(error)
        level = self.level if error is None or outcome == "cancelled" else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            "%s %s %s",
            rec.kind,
            rec.model,
            outcome,
            extra={
                "client": rec.client,
                "kind": rec.kind,
                "model": rec.model,
                "lane": rec.lane,
                "outcome": outcome,
                "attempts": rec.attempts,
                "duration_ms": round(seconds * 1000.0, 3),
                "queue_ms": round(rec.data.pop(self, 0.0) * 1000.0, 3),
            },
        )
