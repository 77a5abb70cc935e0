"""Bulk runs: a JSONL file of Message Batches requests through `Thrift`, resumable at any kill.

``asyncthrift run IN.jsonl -o OUT.jsonl`` (see `cli`) is the command line; `run_bulk` is the
same thing for code that already has an event loop.
"""

from __future__ import annotations

from . import batchmode  # registers ``--batch`` with the runner
from .runner import BulkConfig, BulkReport, run_bulk

del batchmode

__all__ = ["BulkConfig", "BulkReport", "run_bulk"]
