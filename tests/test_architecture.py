"""The package's structure, checked from its source (``ast``): where a change may reach.

- No module reads or writes another object's ``_private`` attribute: an object's privates
  are its module's business; anything another module needs is a public name, a method or
  a protocol it is given. The few places that must reach in are listed, with why.
- No import circle, counting the imports made only for type checking (``TYPE_CHECKING``) and
  those inside functions: a circle of types is still a circle of knowledge, and the one that
  ran through the request path (pipeline, stages, client) is what made it hard to change.
  The circles that remain are listed, with why; a new one, or one of these fixed without
  updating the list, fails.
- No function of the request path runs over 60 lines (its docstring aside), and no module
  over 400 (`MAX_MODULE_LINES`): a module that long does several jobs; split it by job.
- Tests read what a user can (``stats()``, ``budgets()``, public objects), never a client's
  ``_pipeline``; a unit test of one module may read that module's internals (listed).
- Layers: each module belongs to one layer (`LAYERS`), and imports only from its own layer
  and the ones below (``TYPE_CHECKING`` imports included): tools, integrations,
  observability, client, savings, pipeline, stores, scheduling, core, top to bottom. A
  change to a lower layer is the only kind that can reach the ones above it.
- At most `MAX_TOP_LEVEL` files directly in ``asyncthrift/``; those that are not the
  package's own (``__init__``, ``__main__``, ``errors``, ``py.typed``) are re-exports kept
  because README.md or docs/ show their import path, and every path they show imports.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Final

import asyncthrift

PACKAGE: Final = Path(asyncthrift.__file__).parent
ROOT: Final = PACKAGE.parent
TESTS: Final = Path(__file__).parent

#: Modules allowed to touch these private attributes of objects they do not define.
REACH_INS: Final[dict[str, frozenset[str]]] = {
    # the one place for the SDK's internals (its stream's client and options, the status
    # error factory), so an SDK upgrade that moves them breaks one module
    "core/_sdk.py": frozenset({"_client", "_make_status_error", "_options"}),
    # `typing.NamedTuple._replace` is public API under a leading underscore
    "stores/shared/_redis.py": frozenset({"_replace"}),
    # the mock server's handlers are split by endpoint over modules that all drive one
    # `MockServer` (its clock, ids, error bodies, records); it is a test tool, not the client
    "mock/_answering.py": frozenset({"_id", "_now"}),
    "mock/_batch_results.py": frozenset({"_id"}),
    "mock/_batches.py": frozenset({"_error", "_id", "_json", "_now", "_parse", "_retry_headers"}),
    "mock/_messages.py": frozenset(
        {
            "_analyze",
            "_answered",
            "_api_key",
            "_budget",
            "_cache",
            "_error",
            "_id",
            "_now",
            "_parse",
            "_record",
            "_retry_headers",
            "_rng",
        }
    ),
    "mock/_refusal.py": frozenset({"_error", "_now", "_record", "_retry_headers"}),
}

#: Import circles that remain (module names without ``asyncthrift.``).
KNOWN_CIRCLES: Final = {
    # an `Observer` is told which `Thrift` it is attached to (``attached(client, name)``,
    # typed as `Thrift` so user subclasses may annotate it so), and the client imports the
    # `Observer` it checks and calls; the request path depends on `_dispatch`, not on these
    frozenset({"client._observers", "client.thrift"}),
    # the mock server and its per-endpoint handlers type their `server` argument as the
    # `MockServer` that imports them (see `REACH_INS`)
    frozenset(
        {
            "mock._answering",
            "mock._batch_results",
            "mock._batches",
            "mock._messages",
            "mock._refusal",
            "mock._server",
        }
    ),
}

#: The modules a request goes through; their functions stay under `MAX_LINES`.
REQUEST_PATH: Final = (
    "client/_beta.py",
    "client/_config.py",
    "client/_messages.py",
    "client/_pipeline.py",
    "client/_raw_responses.py",
    "client/counting.py",
    "client/streaming.py",
    "client/thrift.py",
    "core/_status.py",
    "gateway/access_log.py",
    "gateway/app.py",
    "gateway/exchange.py",
    "gateway/intake.py",
    "gateway/messages.py",
    "gateway/upstream.py",
    "pipeline/_abandonment.py",
    "pipeline/_admission.py",
    "pipeline/_attempt.py",
    "pipeline/_classes.py",
    "pipeline/_dispatch.py",
    "pipeline/_failures.py",
    "pipeline/_lookup.py",
    "pipeline/_model_fallback.py",
    "pipeline/_plan.py",
    "pipeline/_routes.py",
    "pipeline/_stream_ledger.py",
    "pipeline/_tally.py",
    "savings/_pack_policy.py",
    "savings/adaptive.py",
    "savings/packing.py",
    "savings/prompt_cache.py",
    "scheduling/budget.py",
    "scheduling/net_history.py",
    "scheduling/refusals.py",
    "scheduling/reservation.py",
    "scheduling/resync.py",
    "scheduling/scheduler.py",
    "stores/shared/_ceilings.py",
    "stores/shared/_fallback.py",
    "stores/shared/_lease.py",
    "stores/shared/_roundtrip.py",
    "stores/shared/_slices.py",
    "stores/shared/budget.py",
)
MAX_LINES: Final = 60


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def _defined_names(tree: ast.Module) -> set[str]:
    """Every name the module defines: functions, classes, names and attributes assigned
    (``self._x = ...``, ``obj._x = ...``), annotated, or listed in a ``__slots__``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if not isinstance(target, ast.Name):
                    continue
                names.add(target.id)
                if target.id == "__slots__":
                    names.update(
                        c.value
                        for c in ast.walk(node.value)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    )
    return names


def _reach_ins(path: Path) -> set[tuple[int, str]]:
    return _reach_ins_in(path.read_text())


def _reach_ins_in(source: str) -> set[tuple[int, str]]:
    """(line, ``x._name``) for each access to a private attribute of an object that is not
    ``self``/``cls`` and whose name this module does not define."""
    tree = ast.parse(source)
    own = _defined_names(tree)
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.add((node.lineno, ast.unparse(node)))
    return found


#: Test modules allowed to touch these private attributes of objects they do not define.
TEST_REACH_INS: Final[dict[str, frozenset[str]]] = {
    # the SDK's documented request id of a response (``message._request_id``)
    "test_cache_e2e.py": frozenset({"_request_id"}),
    "test_cold_probe.py": frozenset({"_request_id"}),
    "test_facade.py": frozenset({"_request_id"}),
    "test_sdk_answers.py": frozenset({"_request_id"}),
    # `typing.NamedTuple._replace` is public API under a leading underscore
    "test_foreign.py": frozenset({"_replace"}),
    # argparse lists a parser's subcommands only through its `_actions`
    "test_cli.py": frozenset({"_SubParsersAction", "_actions"}),
    # aiohttp's `TCPSite` tells the port it bound only through its `_server`
    "test_integrations.py": frozenset({"_server"}),
    # that a pass-through view raises AttributeError for a name nobody defines
    "test_parity.py": frozenset({"_private_of_the_sdk"}),
    # unit tests of the gate's timers (`scheduling/scheduler`): one armed timer for any
    # number of waiters (the loop's own timer list), deferred refunds dropped at close
    "test_scheduler.py": frozenset({"_cancelled", "_scheduled", "_timer_at"}),
    "test_abandoned.py": frozenset({"_later"}),
    # the shared-budget worker process traces its lease's gate (a measuring tool)
    "shared_worker.py": frozenset({"_gate"}),
    # the arguments one round trip of a shared budget sends (its ceilings and their instants)
    "test_shared_clamp.py": frozenset({"_trip_args"}),
}


def test_no_module_touches_another_objects_privates() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        allowed = REACH_INS.get(path.relative_to(PACKAGE).as_posix(), frozenset())
        for line, expr in sorted(_reach_ins(path)):
            if expr.rsplit(".", 1)[1] not in allowed:
                bad.append(f"{path.relative_to(PACKAGE)}:{line}: {expr}")
    assert not bad, "private attributes of other objects:\n" + "\n".join(bad)


def test_the_listed_reach_ins_are_still_there() -> None:
    """An exception no longer needed is taken off the list (it would hide a new one)."""
    for module, allowed in REACH_INS.items():
        used = {expr.rsplit(".", 1)[1] for _, expr in _reach_ins(PACKAGE / module)}
        assert used == allowed, (module, sorted(allowed - used))


def test_no_test_touches_another_objects_privates() -> None:
    """The same rule for the tests: a client's ``_pipeline`` (or ``_sdks``, ``_root``) is
    never read; `TEST_REACH_INS` lists the few privates a test reads, with why."""
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        allowed = TEST_REACH_INS.get(path.relative_to(TESTS).as_posix(), frozenset())
        for line, expr in sorted(_reach_ins(path)):
            if expr.rsplit(".", 1)[1] not in allowed:
                bad.append(f"tests/{path.relative_to(TESTS)}:{line}: {expr}")
    assert not bad, "private attributes of other objects:\n" + "\n".join(bad)
    for module, allowed in TEST_REACH_INS.items():
        used = {expr.rsplit(".", 1)[1] for _, expr in _reach_ins(TESTS / module)}
        assert used == allowed, (module, sorted(allowed - used))


def test_the_rule_sees_a_reach_in() -> None:
    """The check itself: a foreign private is found; self's, and the module's own, are not."""
    source = (
        "class A:\n"
        "    __slots__ = ('_mine',)\n"
        "    def f(self, other, gate):\n"
        "        self._x = other._mine\n"
        "        return gate._refund, self._y, other.__class__\n"
    )
    assert _reach_ins_in(source) == {(5, "gate._refund")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `path` imports anywhere in it: at the top, inside functions, and
    under ``TYPE_CHECKING``."""
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.split(".")[:-1]  # a package's __init__: the package itself
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif (node.module or "").startswith("asyncthrift."):
                target = (node.module or "").removeprefix("asyncthrift.")
            else:
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("asyncthrift."):
                    found.add(alias.name.removeprefix("asyncthrift."))
    this = module.removesuffix(".__init__")
    # a package's __init__ re-exporting its children is not a circle
    return {m for m in found if m in modules and m != this and not this.startswith(m + ".")}


def _circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_even_for_types() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert _circles(graph) == KNOWN_CIRCLES


def test_the_circle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == {frozenset({"a", "b", "c"})}


def test_no_function_of_the_request_path_is_over_60_lines() -> None:
    long = []
    for name in REQUEST_PATH:
        path = PACKAGE / name
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if (
                isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body = body[1:]  # the docstring
            if not body:
                continue
            lines = (node.end_lineno or node.lineno) - body[0].lineno + 1
            if lines > MAX_LINES:
                long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


#: Lines a module may have, at most.
MAX_MODULE_LINES: Final = 400
#: Modules over `MAX_MODULE_LINES` still to split (none: keep it empty; a module that grows
#: over the line is split by its jobs, not listed here).
LONG_MODULES: Final[frozenset[str]] = frozenset()


def test_no_module_is_over_400_lines() -> None:
    lines = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    long = {name: n for name, n in lines.items() if n > MAX_MODULE_LINES}
    assert set(long) <= LONG_MODULES, sorted(set(long) - LONG_MODULES)
    # a module split since is taken off the list (it would hide the next one to grow)
    assert set(long) == LONG_MODULES, sorted(LONG_MODULES - set(long))


#: Each top-level name of the package (a subpackage or a module directly in it) and its
#: layer; a higher layer may import a lower one, never the reverse. The documented
#: re-exports at the top sit in the layer of the module they re-export.
LAYERS: Final[dict[str, int]] = {
    # core: imports nothing of the package but itself
    "errors": 0,
    "core": 0,
    # admission: buckets, budgets, the scheduler, limits
    "scheduling": 1,
    # what outlives a request: cache, shared budgets, spend ledgers
    "stores": 2,
    "spend": 2,
    "spend_redis": 2,
    # the request path's stages
    "pipeline": 3,
    # ways to pay less, wrapped around the pipeline's attempt
    "savings": 4,
    "compression": 4,
    "fewshot": 4,
    "packing": 4,
    # Thrift, its resources and the Pipeline it assembles
    "client": 5,
    "counting": 5,
    # observers attached from outside
    "observability": 6,
    "logging": 6,
    "metrics": 6,
    "integrations": 7,
    # programs on top of the library
    "tools": 8,
    "bulk": 8,
    "mock": 8,
    "gateway": 8,
    "__main__": 8,
}
#: The package's own files at the top (the rest are documented re-exports).
OWN_TOP_LEVEL: Final = frozenset({"__init__.py", "__main__.py", "errors.py", "py.typed"})
MAX_TOP_LEVEL: Final = 15


def _layer_breaches(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """``a -> b`` for each import of a module of a higher layer (the package's `__init__`,
    which re-exports the public names, stands above all of them)."""

    def layer(module: str) -> int:
        return layers[module.split(".")[0]]

    return [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in sorted(graph.items())
        if module != "__init__"
        for target in sorted(targets)
        if target != "__init__" and layer(target) > layer(module)
    ]


def test_every_module_has_a_layer() -> None:
    tops = {name.split(".")[0] for name in _modules()} - {"__init__"}
    assert tops == set(LAYERS), (sorted(tops - set(LAYERS)), sorted(set(LAYERS) - tops))


def test_imports_point_down_the_layers_even_for_types() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert not _layer_breaches(graph, LAYERS)


def test_the_layer_rule_sees_an_upward_import() -> None:
    graph = {"low.a": {"high.b", "low.c"}, "high.b": {"low.a"}, "low.c": set()}
    assert _layer_breaches(graph, {"low": 0, "high": 1}) == [
        "low.a (layer 0) imports high.b (layer 1)"
    ]


def test_at_most_15_files_at_the_top_of_the_package() -> None:
    files = sorted(p.name for p in PACKAGE.iterdir() if p.is_file())
    assert len(files) <= MAX_TOP_LEVEL, files


def _documented() -> str:
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))])


def test_every_top_level_re_export_is_a_documented_path() -> None:
    """A module at the top that is not the package's own is there only because README.md or
    docs/ show its import path; one nobody shows belongs in its layer's package."""
    text = _documented()
    for path in PACKAGE.glob("*.py"):
        if path.name not in OWN_TOP_LEVEL:
            assert f"asyncthrift.{path.stem}" in text, path.name


def test_every_import_path_the_docs_show_works() -> None:
    """``from asyncthrift.x import a, b`` in README.md and docs/ imports, and each
    ``python -m asyncthrift.x`` they show has a module to run."""
    text = _documented()
    shown = re.findall(r"^from (asyncthrift[\w.]*) import ([\w, ]+)", text, re.M)
    assert len(shown) >= 10, shown  # the scan still finds them
    for module, names in shown:
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), (module, name)
    for module in re.findall(r"python -m (asyncthrift[\w.]*)", text):
        assert importlib.util.find_spec(f"{module}.__main__") or importlib.util.find_spec(module)
