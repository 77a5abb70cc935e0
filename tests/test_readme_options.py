"""README's options table lists every `Thrift(...)` option, and only those.

Derived from `Thrift.__init__`'s signature, so an option added there without a row (or a
row left behind by a removed option) fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from asyncthrift import Thrift

README = Path(__file__).resolve().parent.parent / "README.md"


def table_options(text: str) -> set[str]:
    """The backticked names in the first column of the table headed ``| `Thrift(...)` |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `Thrift(...)` |"))
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1]
        names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
    return names


def signature_options() -> set[str]:
    params = inspect.signature(Thrift.__init__).parameters.values()
    return {
        p.name
        for p in params
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def test_readme_options_table_lists_every_thrift_option() -> None:
    listed = table_options(README.read_text(encoding="utf-8"))
    expected = signature_options()
    assert not expected - listed, f"options missing from README's table: {expected - listed}"
    assert not listed - expected, f"README lists options Thrift has not: {listed - expected}"


def test_table_parser_reads_combined_cells() -> None:
    text = "| `Thrift(...)` | d | m |\n|---|---|---|\n| `a`, `b_c` | x | `not_this` |\n\nafter\n"
    assert table_options(text) == {"a", "b_c"}
