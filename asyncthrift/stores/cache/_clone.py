"""A fresh copy of a `Message` this process already validated: what a hit of an in-process
cache returns instead of validating the same bytes again.

`decode_message` validates an entry strictly into a new `Message` on every read, because
a shared cache is input from outside the process. An entry this process wrote into its own
`MemoryCache` (`OwnEntry`) needs that only once: its first read validates it, and each later
read copies the validated message. The copy must be as independent as a fresh decode (the
caller may change the message, its blocks, their lists and dicts), so every model, list,
dict and set is new; only immutable values (strings, numbers, None, datetimes, enum
members) are shared. Copying the model graph directly costs a fraction of validating it
(pydantic's ``model_copy(deep=True)`` goes through `copy.deepcopy`, which costs more).
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
from typing import Any, Final, TypeVar

from pydantic import BaseModel

__all__ = ["clone_model"]

M = TypeVar("M", bound=BaseModel)

_IMMUTABLE: Final[frozenset[type]] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
    }
)

_set_attr = object.__setattr__

_MODELS: set[type] = set()
"""Model classes met so far (a handful: a message's, its blocks', its usage's)."""


def clone_model(model: M) -> M:
    """A copy of `model` sharing nothing mutable with it (see the module's docstring)."""
    cls = type(model)
    new = cls.__new__(cls)
    _set_attr(new, "__dict__", _clone_dict(model.__dict__))
    _set_attr(new, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    extra = model.__pydantic_extra__
    _set_attr(new, "__pydantic_extra__", None if extra is None else _clone_dict(extra))
    private = model.__pydantic_private__
    _set_attr(new, "__pydantic_private__", None if private is None else _clone_dict(private))
    return new


def _clone_dict(values: dict[str, Any]) -> dict[str, Any]:
    # copied whole, then only the values that are not immutable replaced: most of a
    # message's values are strings, numbers and None, which cost one test each here
    new = values.copy()
    immutable = _IMMUTABLE
    for key, value in values.items():
        if type(value) not in immutable:
            new[key] = _clone(value)
    return new


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is list:
        immutable = _IMMUTABLE
        return [v if type(v) in immutable else _clone(v) for v in value]
    if kind is dict:
        return _clone_dict(value)
    if kind in _MODELS or isinstance(value, BaseModel):  # `isinstance`: ABCMeta's, slow
        _MODELS.add(kind)
        return clone_model(value)
    if isinstance(value, enum.Enum):
        return value
    if kind is tuple:
        return tuple(_clone(v) for v in value)
    return copy.deepcopy(value)  # anything else: the general (slower) way
