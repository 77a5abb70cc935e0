"""`Recorder` keeps every counter of `Stats`, typed as there, and new fields come last."""

from __future__ import annotations

from dataclasses import fields

from asyncthrift.stats import Recorder, Stats


def test_the_recorder_declares_every_counted_field_with_its_type() -> None:
    r = Recorder()
    snap = r.snapshot()
    declared = Recorder.__annotations__
    for f in fields(Stats):
        if f.name in declared:
            assert declared[f.name] == type(f.default).__name__, f.name
            assert getattr(r, f.name) == f.default
    assert snap == Stats()


def test_the_savings_fields_are_appended_after_the_original_ones() -> None:
    names = [f.name for f in fields(Stats)]
    assert names.index("latency_p99") < names.index("cache_calls_saved")
    assert names[-1] == "max_tokens_dollars_lost"
