"""`Recorder` keeps every counter of `Stats`, typed as there, and new fields come last."""

from __future__ import annotations

from dataclasses import fields, replace

from asyncthrift.core.stats import Recorder, Stats


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
    assert names.index("max_tokens_dollars_lost") < names.index("cache_truncated_skipped")
    assert names[-1] == "pack_paused_at"


def test_prometheus_reports_savings_by_technique() -> None:
    import pytest

    prometheus_client = pytest.importorskip("prometheus_client")
    from asyncthrift import Thrift
    from asyncthrift.observability.metrics import PrometheusMetrics

    class Saved(Thrift):
        """A client whose snapshot says these savings (the exporter reads only `stats()`)."""

        def stats(self) -> Stats:
            return replace(
                super().stats(),
                packing_calls_saved=9,
                packing_tokens_saved=900,
                packing_dollars_saved=0.5,
                prompt_cache_tokens_saved=2000,
                prompt_cache_dollars_saved=-0.01,
                max_tokens_reserve_saved=4000,
                max_tokens_dollars_lost=0.02,
            )

    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    client = Saved(api_key="k", observers=[metrics])  # held: the exporter keeps a weakref
    text = prometheus_client.generate_latest(registry).decode()
    assert 'technique_saved_calls_total{client="default",technique="packing"} 9.0' in text
    assert 'technique_saved_tokens_total{client="default",technique="prompt_cache"} 2000.0' in text
    assert 'technique_saved_usd{client="default",technique="max_tokens"} -0.02' in text
    assert 'technique_saved_usd{client="default",technique="prompt_cache"} -0.01' in text
    assert client.stats().packing_calls_saved == 9  # alive until here
