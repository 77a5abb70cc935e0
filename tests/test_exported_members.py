"""Pin the public API: a name leaving `__all__` is a breaking change, and should fail here."""

from __future__ import annotations

import asyncthrift


def test_all_is_pinned() -> None:
    assert set(asyncthrift.__all__) == {
        "PRESETS",
        "BudgetExceeded",
        "ClientClosed",
        "Cost",
        "DeadlineExceeded",
        "InvalidArgument",
        "KeyConfig",
        "Limits",
        "LocalBudget",
        "Messages",
        "NoKeysLeft",
        "QueueFull",
        "RequestTooLarge",
        "RetryPolicy",
        "Stats",
        "Thrift",
        "ThriftError",
        "TokenBucket",
        "__version__",
        "errors",
        "model_class",
    }


def test_every_exported_name_exists() -> None:
    for name in asyncthrift.__all__:
        assert hasattr(asyncthrift, name), name


def test_errors_are_typed_and_catchable_together() -> None:
    from asyncthrift import errors

    for cls in (
        errors.QueueFull,
        errors.DeadlineExceeded,
        errors.BudgetExceeded,
        errors.RequestTooLarge,
        errors.ClientClosed,
        errors.NoKeysLeft,
        errors.InvalidArgument,
    ):
        assert issubclass(cls, errors.ThriftError)


def test_invalid_argument_is_a_value_error() -> None:
    """Code written against the SDK's ``except ValueError`` keeps catching bad arguments."""
    assert issubclass(asyncthrift.InvalidArgument, ValueError)
    assert asyncthrift.InvalidArgument is asyncthrift.errors.InvalidArgument
