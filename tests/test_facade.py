"""The facade a user moving from `anthropic.AsyncAnthropic` should not notice, and the
package's shape: one request path, no import circles."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.resources.beta.messages.messages import AsyncMessages as AsyncBetaMessages
from anthropic.resources.messages.messages import AsyncMessages

import asyncthrift
from asyncthrift import Limits, Thrift

PACKAGE = Path(asyncthrift.__file__).parent
OURS = {"priority", "deadline", "cache", "dedupe", "calibrate", "pack", "task"}


def _facade_defs(
    name: str, module: str = "client/_messages.py", cls_name: str = "Messages"
) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The typed defs of `<cls_name>.<name>` in `module` (overloads, or the
    ``TYPE_CHECKING`` signature), read from the source."""
    tree = ast.parse((PACKAGE / module).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    found = []
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name == name
            and node.args.kwonlyargs
        ):
            found.append(node)
    return found


def _sdk_signatures(name: str, sdk_cls: type = AsyncMessages) -> list[inspect.Signature]:
    fn = getattr(sdk_cls, name)
    return [inspect.signature(f) for f in (typing.get_overloads(fn) or [fn])]


FACADES = [
    ("client/_messages.py", "Messages", AsyncMessages),
    ("client/_beta.py", "BetaMessages", AsyncBetaMessages),
]


@pytest.mark.parametrize(("module", "cls_name", "sdk_cls"), FACADES, ids=["messages", "beta"])
@pytest.mark.parametrize("name", ["create", "stream", "count_tokens", "parse"])
def test_the_typed_signatures_are_the_sdks(
    name: str, module: str, cls_name: str, sdk_cls: type
) -> None:
    """Regenerate with scripts/gen_signatures.py (--beta) when this fails after an SDK
    upgrade."""
    ours = _facade_defs(name, module, cls_name)
    theirs = _sdk_signatures(name, sdk_cls)
    assert len(ours) == len(theirs)
    for node, sig in zip(ours, theirs, strict=True):
        params = list(sig.parameters.values())[1:]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        expected = [(p.name, p.default is inspect.Parameter.empty) for p in params]
        defaults = node.args.kw_defaults
        got = [
            (a.arg, d is None)
            for a, d in zip(node.args.kwonlyargs, defaults, strict=True)
            if a.arg not in OURS
        ]
        assert got == expected
        assert not node.args.args[1:] and node.args.kwarg is None


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports at run time (not under ``TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if module.endswith(".__init__"):
        package = module.removesuffix(".__init__")
    else:
        package = module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                found.add(target)
                for alias in node.names:
                    found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asyncthrift"):
                found.add(node.module or "")
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif hasattr(child, "body"):
                    pass

    visit(tree.body)
    return found


def test_the_import_graph_has_no_circles() -> None:
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # a package's __init__ re-exporting its children is not a circle
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


def test_no_module_reaches_into_the_clients_privates() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "from .client import _" not in text, path
        assert "setattr(client" not in text, path


USER_FILE = """
from typing import assert_type

import anthropic
from anthropic import AsyncStream
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent

from asyncthrift import Thrift


async def main(client: Thrift) -> None:
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=[], priority="batch"
    )
    assert_type(message, Message)
    stream = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=[], stream=True
    )
    assert_type(stream, AsyncStream[RawMessageStreamEvent])
    counted = await client.messages.count_tokens(model="claude-sonnet-4-6", messages=[])
    assert_type(counted, MessageTokensCount)
    async with client.messages.stream(model="m", max_tokens=1, messages=[]) as s:
        assert_type(await s.get_final_message(), anthropic.types.ParsedMessage[None])
    reveal_type(await client.messages.create(model="m", max_tokens=1, messages=[]))
    await client.messages.create(model="m", max_token=1, messages=[])  # misspelled
    await client.close()
    other = client.with_options(timeout=5.0)
    assert_type(other, Thrift)
    await client.models.list()
    raw = await client.messages.with_raw_response.create(model="m", max_tokens=1, messages=[])
    assert_type(await raw.parse(), Message)
    raw_stream = await client.messages.with_raw_response.create(
        model="m", max_tokens=1, messages=[], stream=True
    )
    assert_type(await raw_stream.parse(), AsyncStream[RawMessageStreamEvent])
    assert_type(raw_stream.headers.get("request-id"), str | None)
"""


def mypy_strict(directory: Path, sources: dict[str, str]) -> str:
    """What ``mypy --strict`` says of `sources` (file name: text), written as a user's files
    in `directory`: one run for all of them (each run reads the SDK's types, ~25 s on CI)."""
    for name, source in sources.items():
        (directory / name).write_text(source)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--cache-dir",
        str(directory / "cache"),
        "--python-version",
        "3.11",
        "--follow-imports",
        "silent",
        *(str(directory / name) for name in sources),
    ]
    # the repository itself on mypy's path: an editable install is an import hook that mypy
    # does not follow (green with PYTHONPATH set, red on a clean CI machine)
    env = {**os.environ, "MYPYPATH": str(PACKAGE.parent)}
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=directory, check=False, env=env
    ).stdout


@pytest.fixture(scope="module")
def mypy_says(tmp_path_factory: pytest.TempPathFactory) -> str:
    """mypy --strict on both users' files below, ``user.py`` and ``parity.py``, run once;
    each file's lines start with its name."""
    return mypy_strict(
        tmp_path_factory.mktemp("mypy"),
        {"user.py": textwrap.dedent(USER_FILE), "parity.py": textwrap.dedent(PARITY_FILE)},
    )


def test_mypy_sees_the_sdks_types(mypy_says: str) -> None:
    out = mypy_says
    lines = [line for line in out.splitlines() if line.startswith("user.py:")]
    revealed = [line for line in lines if "Revealed type" in line]
    assert len(revealed) == 1 and '"anthropic.types.message.Message"' in revealed[0], out
    errors = [line for line in lines if ": error:" in line]
    assert errors and all(line.startswith("user.py:25:") for line in errors), out
    assert any('"max_token"' in line for line in errors), out


PARITY_FILE = """
from typing import assert_type

import httpx2
import pydantic
from anthropic import AsyncAPIResponse, AsyncStream
from anthropic.types import Message, ParsedMessage
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount, BetaRawMessageStreamEvent
from anthropic.types.beta.parsed_beta_message import ParsedBetaMessage

from asyncthrift import Thrift


class Label(pydantic.BaseModel):
    label: str


async def main(client: Thrift) -> None:
    await client.messages.create(model="m", max_tokens=1, messages=[], priority="urgent")  # E
    await client.messages.create(model="m", max_tokens=1, messages=[], priority=3)
    await client.messages.count_tokens(model="m", messages=[], priority="later")  # E
    parsed = await client.messages.parse(
        model="m", max_tokens=1, messages=[], output_format=Label, priority="batch"
    )
    assert_type(parsed, ParsedMessage[Label])
    beta = await client.beta.messages.create(
        model="m", max_tokens=1, messages=[], betas=["context-1m-2025-08-07"]
    )
    assert_type(beta, BetaMessage)
    events = await client.beta.messages.create(model="m", max_tokens=1, messages=[], stream=True)
    assert_type(events, AsyncStream[BetaRawMessageStreamEvent])
    counted = await client.beta.messages.count_tokens(model="m", messages=[])
    assert_type(counted, BetaMessageTokensCount)
    beta_parsed = await client.beta.messages.parse(
        model="m", max_tokens=1, messages=[], output_format=Label
    )
    assert_type(beta_parsed, ParsedBetaMessage[Label])
    async with client.beta.messages.stream(model="m", max_tokens=1, messages=[]) as s:
        assert_type(await s.get_final_message(), ParsedBetaMessage[None])
    await client.beta.messages.create(model="m", max_tokens=1, messages=[], priority="now")  # E
    raw = await client.beta.messages.with_raw_response.create(model="m", max_tokens=1, messages=[])
    assert_type(await raw.parse(), BetaMessage)
    async with client.messages.with_streaming_response.create(
        model="m", max_tokens=1, messages=[]
    ) as response:
        assert_type(response, AsyncAPIResponse[Message])
    top = await client.with_raw_response.messages.create(model="m", max_tokens=1, messages=[])
    assert_type(await top.parse(), Message)
    assert_type(client.copy(timeout=3.0), Thrift)
    assert_type(client.is_closed(), bool)
    assert_type(client.base_url, httpx2.URL)
    assert_type(client.max_retries, int)
"""


def test_mypy_catches_a_bad_priority_and_types_parse_beta_and_raw_views(mypy_says: str) -> None:
    """Issue #21: ``priority`` is a `Literal` of the lanes (or an int), so a type checker
    refuses ``priority="urgent"``; ``parse``, ``beta.messages`` and the raw/streaming views
    are typed with the SDK's own answers."""
    source = textwrap.dedent(PARITY_FILE)
    expected = {i for i, line in enumerate(source.splitlines(), 1) if line.endswith("# E")}
    out = mypy_says
    errors = [
        line for line in out.splitlines() if line.startswith("parity.py:") and ": error:" in line
    ]
    lines = {int(line.split(":")[1]) for line in errors}
    assert lines == expected, out  # exactly the three bad priorities, nothing else


async def test_passthrough_resources_and_close() -> None:
    client = Thrift(api_key="k", base_url="http://127.0.0.1:9", limits=None)
    sdk: Any = anthropic.AsyncAnthropic
    assert type(client.models).__name__ == type(sdk(api_key="k").models).__name__
    assert client.files is not None and client.beta is not None
    assert client.messages.batches is not None
    view = client.with_options(timeout=3.0, max_retries=1)
    assert view.stats() == client.stats()  # the same pipeline
    await view.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=1, messages=[])


async def test_with_raw_response_stream_gives_headers_first_and_the_scheduled_stream() -> None:
    from asyncthrift.mock import MockServer

    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "hi"}],
    }
    limits = Limits(rpm=100, otpm=10_000)
    async with (
        MockServer(limits=limits, output_tokens=(30, 60)) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits, cache="memory") as client,
    ):
        produced = 0
        for _ in range(2):  # never cached or shared: the second goes upstream too
            raw = await client.messages.with_raw_response.create(**body, stream=True)
            assert raw.status_code == 200 and raw.request_id
            assert raw.headers["content-type"].startswith("text/event-stream")
            assert raw.headers["anthropic-ratelimit-requests-limit"] == "100"
            stream = await raw.parse()
            assert await raw.parse() is stream
            events = [event async for event in stream]
            assert events[0].type == "message_start" and events[-1].type == "message_stop"
            produced += sum(e.usage.output_tokens for e in events if e.type == "message_delta")
        budget = client.budgets()["sonnet"][0]
        s = client.stats()
        assert (s.requests, s.succeeded, s.upstream_calls, s.in_flight) == (2, 2, 2, 0)
        assert mock.counters.streams == 2
        # settled at message_stop: the unused part of max_tokens came back (what stays
        # charged is the output produced, read no higher than the server's headers say)
        output_left = budget.peek(asyncio.get_running_loop().time())[2]
        assert output_left is not None and produced < 200
        assert 10_000 - 2 * 400 + 400 < output_left <= 10_000 - produced, output_left
        # closed before reading: settled too, with nothing left in flight
        raw = await client.messages.with_raw_response.create(**body, stream=True)
        await raw.close()
        assert client.stats().in_flight == 0
        with pytest.raises(TypeError, match="stream="):
            await client.messages.with_raw_response.create(**body, stream="yes")


async def test_with_raw_response_create_and_count_tokens_go_through_the_pipeline() -> None:
    from asyncthrift.mock import MockServer

    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        MockServer(limits=Limits(rpm=100)) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=Limits(rpm=100)) as client,
    ):
        raw = await client.messages.with_raw_response.create(**body)
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "100"
        message = await raw.parse()
        assert isinstance(message, anthropic.types.Message) and message._request_id
        counted_raw = await client.messages.with_raw_response.count_tokens(
            model=body["model"], messages=body["messages"]
        )
        counted = await counted_raw.parse()
        assert isinstance(counted, anthropic.types.MessageTokensCount)
        assert counted.input_tokens > 0
        s = client.stats()
        assert (s.requests, s.succeeded, s.upstream_calls) == (2, 2, 2)
        assert mock.counters.count_tokens == 1 and mock.counters.ok == 1
