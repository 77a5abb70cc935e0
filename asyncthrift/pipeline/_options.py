"""Validation of the client's own per-request options, split from the SDK's arguments.

Everything that is not one of asyncthrift's options passes through to the SDK unchanged.
Bad values fail here, before anything is queued, with a message that says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..scheduling.lanes import LANES, lane_level

__all__ = ["RequestOptions", "split_options", "stream_requested"]

_OURS = ("priority", "deadline", "cache", "dedupe", "pack", "task")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    level: int
    deadline: float | None
    cache: bool | None
    dedupe: bool | None
    pack: bool | None = None
    task: str | None = None


def _bool_or_none(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"{name}= must be True, False or None (client default), got {value!r}")


def stream_requested(kwargs: dict[str, Any]) -> bool:
    """Whether ``stream=`` asks for a stream: True, False or None (absent: not streamed).

    Strict like ``cache=`` and ``dedupe=``: ``stream="yes"`` or ``stream=1`` is refused
    rather than read by truthiness (``stream="false"`` would otherwise stream).
    """
    value = kwargs.get("stream")
    if value is None or isinstance(value, bool):
        return bool(value)
    raise TypeError(f"stream= must be True, False or None (not streamed), got {value!r}")


def _level(priority: object) -> int:
    """The lane level of ``priority=``; None means the default lane, like ``deadline=None``."""
    if priority is None:
        return LANES["default"]
    try:
        return lane_level(priority)
    except TypeError:
        raise TypeError(
            "priority= must be 'interactive', 'default', 'batch', an int (higher is served "
            f"first) or None (the default lane), got {type(priority).__name__} {priority!r}"
        ) from None


_DEFAULTS = RequestOptions(level=LANES["default"], deadline=None, cache=None, dedupe=None)
_OURS_SET = frozenset(_OURS)


def split_options(kwargs: dict[str, Any]) -> tuple[RequestOptions, dict[str, Any]]:
    """Pop asyncthrift's options out of `kwargs`; validate them and the fields we rely on.

    None means "the default" for every option alike: ``priority=None`` is the default lane,
    ``deadline=None`` no deadline, ``cache=None`` / ``dedupe=None`` / ``pack=None`` the
    client's setting, ``task=None`` the client's default task (adaptive ``max_tokens``).
    """
    if _OURS_SET.isdisjoint(kwargs):  # the usual call: no options of ours
        _check_sdk_fields(kwargs)
        return _DEFAULTS, kwargs
    priority = kwargs.pop("priority", None)
    deadline = kwargs.pop("deadline", None)
    cache = _bool_or_none("cache", kwargs.pop("cache", None))
    dedupe = _bool_or_none("dedupe", kwargs.pop("dedupe", None))
    pack = _bool_or_none("pack", kwargs.pop("pack", None))
    task = kwargs.pop("task", None)
    if task is not None and (not isinstance(task, str) or not task):
        raise TypeError(f"task= must be a non-empty string naming the kind of task, got {task!r}")
    level = _level(priority)
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float):
            raise TypeError(
                f"deadline= must be a number of seconds to wait for admission, or None "
                f"(no deadline); got {type(deadline).__name__} {deadline!r}"
            )
        if math.isnan(deadline) or deadline < 0:
            raise InvalidArgument(
                f"deadline= must be >= 0 seconds (how long to wait for admission), or None "
                f"for no deadline; got {deadline!r}"
            )
        if math.isinf(deadline):
            deadline = None
    _check_sdk_fields(kwargs)
    return RequestOptions(level, deadline, cache, dedupe, pack, task), kwargs


def _check_sdk_fields(kwargs: dict[str, Any]) -> None:
    """The SDK arguments the scheduler relies on: fail here, before anything is queued."""
    if "model" not in kwargs or not isinstance(kwargs["model"], str) or not kwargs["model"]:
        raise TypeError("messages.create() needs model= (a model id string)")
    max_tokens = kwargs.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise TypeError(f"messages.create() needs max_tokens= as an int >= 1, got {max_tokens!r}")
    if max_tokens < 1:
        raise InvalidArgument(
            f"max_tokens must be >= 1 (the most output tokens the answer may use), got {max_tokens}"
        )
    if not isinstance(kwargs.get("messages"), list | tuple):
        raise TypeError("messages.create() needs messages= as a list of {role, content}")
