"""Pin the public API: a name leaving `__all__` is a breaking change, and should fail here."""

from __future__ import annotations

import asyncthrift


def test_all_is_pinned() -> None:
    assert set(asyncthrift.__all__) == {
        "PRESETS",
        "BudgetExceeded",
        "Cost",
        "DeadlineExceeded",
        "KeyConfig",
        "Limits",
        "LocalBudget",
        "Messages",
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
    ):
        assert issubclass(cls, errors.ThriftError)
