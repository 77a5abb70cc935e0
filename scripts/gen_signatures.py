"""Print the typed `messages.create`/`stream`/`count_tokens` overloads of asyncthrift's facade.

    python scripts/gen_signatures.py > /tmp/sigs.py   # then paste into asyncthrift/_messages.py

They are the installed SDK's `AsyncMessages` signatures, parameter for parameter, plus
asyncthrift's keyword-only options. `tests/test_facade.py` fails when they drift apart.
"""

from __future__ import annotations

import inspect
import typing

from anthropic.resources.messages.messages import AsyncMessages

OURS = {
    "create": ["priority", "deadline", "cache", "dedupe"],
    "stream": ["priority", "deadline", "cache", "dedupe"],
    "count_tokens": ["priority", "deadline", "calibrate"],
}
OUR_TYPES = {
    "priority": "Priority | None",
    "deadline": "float | None",
    "cache": "bool | None",
    "dedupe": "bool | None",
    "calibrate": "bool",
}
RETURNS = {
    "Message": "Message",
    "AsyncStream[RawMessageStreamEvent]": "AsyncStream[RawMessageStreamEvent]",
    "Message | AsyncStream[RawMessageStreamEvent]": "Message | AsyncStream[RawMessageStreamEvent]",
    "AsyncMessageStreamManager[ResponseFormatT]": "ThriftStreamManager[ResponseFormatT]",
    "MessageTokensCount": "MessageTokensCount",
}


def params(fn: typing.Any, name: str) -> str:
    lines = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        default = "" if p.default is inspect.Parameter.empty else " = ..."
        lines.append(f"        {p.name}: {p.annotation}{default},")
    for ours in OURS[name]:
        lines.append(f"        {ours}: {OUR_TYPES[ours]} = ...,")
    return "\n".join(lines)


def main() -> None:
    for name in ("create", "stream", "count_tokens"):
        fns = typing.get_overloads(getattr(AsyncMessages, name)) or [getattr(AsyncMessages, name)]
        for fn in fns:
            is_async = inspect.iscoroutinefunction(fn) or name != "stream"
            ret = RETURNS[str(inspect.signature(fn).return_annotation)]
            generic = "[ResponseFormatT]" if "ResponseFormatT" in ret else ""
            del generic
            print("    @overload" if len(fns) > 1 else "    # signature")
            print(f"    {'async ' if is_async else ''}def {name}(")
            print("        self,\n        *,")
            print(params(fn, name))
            print(f"    ) -> {ret}: ...")
            print()


if __name__ == "__main__":
    main()
