"""Print the typed overloads of asyncthrift's Messages facades, from the installed SDK.

    python scripts/gen_signatures.py > /tmp/sigs.py         # into asyncthrift/client/_messages.py
    python scripts/gen_signatures.py --beta > /tmp/beta.py  # into asyncthrift/client/_beta.py

They are the installed SDK's `AsyncMessages` signatures (``client.messages``, or with
``--beta`` ``client.beta.messages``), parameter for parameter, plus asyncthrift's keyword-only
options. `tests/test_facade.py` fails when they drift apart. A new annotation name needs an
import under the file's ``TYPE_CHECKING`` block (mypy says which).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import typing

from anthropic.resources.beta.messages.messages import AsyncMessages as AsyncBetaMessages
from anthropic.resources.messages.messages import AsyncMessages

METHODS = ("create", "stream", "count_tokens", "parse")

#: asyncthrift's own options per method. Beta calls are scheduled but never cached, shared
#: or packed (their answers are the SDK's Beta types), so they take only the lane options.
OURS = {
    "create": ["priority", "deadline", "cache", "dedupe", "pack", "task"],
    "stream": ["priority", "deadline", "cache", "dedupe", "pack", "task"],
    "count_tokens": ["priority", "deadline", "calibrate"],
    "parse": ["priority", "deadline", "cache", "dedupe", "task"],
}
OURS_BETA = {
    "create": ["priority", "deadline"],
    "stream": ["priority", "deadline"],
    "count_tokens": ["priority", "deadline", "calibrate"],
    "parse": ["priority", "deadline"],
}
OUR_TYPES = {
    "priority": "Priority | None",
    "deadline": "float | None",
    "cache": "bool | None",
    "dedupe": "bool | None",
    "pack": "bool | None",
    "task": "str | None",
    "calibrate": "bool",
}
#: The SDK's return type -> the facade's (the same, but for the stream managers).
RETURNS = {
    "AsyncMessageStreamManager[ResponseFormatT]": "ThriftStreamManager[ResponseFormatT]",
    "BetaAsyncMessageStreamManager[ResponseFormatT]": "BetaStreamManager[ResponseFormatT]",
}


class _Modern(ast.NodeTransformer):
    """``Optional[X]`` -> ``X | None``, ``Union[A, B]`` -> ``A | B``, ``List[X]`` ->
    ``list[X]``: the SDK's annotations in the style the package is written in."""

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        name = node.value.id if isinstance(node.value, ast.Name) else None
        if name == "Optional":
            return ast.BinOp(node.slice, ast.BitOr(), ast.Constant(None))
        if name == "Union":
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            out = items[0]
            for item in items[1:]:
                out = ast.BinOp(out, ast.BitOr(), item)
            return out
        if name == "List":
            return ast.Subscript(ast.Name("list"), node.slice)
        return node


def modern(annotation: object) -> str:
    tree = _Modern().visit(ast.parse(str(annotation), mode="eval"))
    return ast.unparse(tree).replace("'", '"')


def params(fn: typing.Any, ours: list[str], is_async: bool) -> str:
    lines = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        default = "" if p.default is inspect.Parameter.empty else " = ..."
        # flake8-async: an async def taking `timeout` is fine here, it is the SDK's
        noqa = "  # noqa: ASYNC109" if is_async and p.name == "timeout" else ""
        lines.append(f"        {p.name}: {modern(p.annotation)}{default},{noqa}")
    for name in ours:
        lines.append(f"        {name}: {OUR_TYPES[name]} = ...,")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beta", action="store_true", help="client.beta.messages")
    args = parser.parse_args(argv)
    cls = AsyncBetaMessages if args.beta else AsyncMessages
    ours = OURS_BETA if args.beta else OURS
    for name in METHODS:
        fns = typing.get_overloads(getattr(cls, name)) or [getattr(cls, name)]
        for fn in fns:
            is_async = inspect.iscoroutinefunction(fn) or name != "stream"
            ret = str(inspect.signature(fn).return_annotation)
            print("    @overload" if len(fns) > 1 else "    # signature")
            print(f"    {'async ' if is_async else ''}def {name}(")
            print("        self,\n        *,")
            print(params(fn, ours[name], is_async))
            print(f"    ) -> {RETURNS.get(ret, ret)}: ...")
            print()


if __name__ == "__main__":
    main()
