"""The result of one request of a mock batch, as ``POST /v1/messages`` would have answered it.

Kept apart from the batch store (`_batches`), which is about time and bookkeeping (when each
request finishes, counts, listing): this is the content, the same deterministic answer the
Messages endpoint gives for the same params, or the ``errored`` result the API writes for
params it validates only once the batch runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._answers import answer_for
from ._tokenizer import analyze_input
from ._validate import validate

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["batch_result"]


def batch_result(server: MockServer, params: Any) -> dict[str, Any]:
    """A request's result, as ``POST /v1/messages`` would have answered it."""
    cfg = server.config
    problem = validate(params, count_tokens=False, max_output_tokens=cfg.max_output_tokens)
    if problem is None and isinstance(params, dict) and params.get("stream"):
        problem_type, message = "invalid_request_error", "stream: not supported in batches"
    elif problem is not None:
        problem_type, message = problem.type, problem.message
    else:
        problem_type = message = ""
    if not problem_type:
        assert isinstance(params, dict)
        analysis = analyze_input(params)
        if analysis.total > cfg.context_window:
            problem_type = "invalid_request_error"
            message = f"prompt is too long: {analysis.total} tokens > {cfg.context_window} maximum"
    if problem_type:
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": problem_type, "message": message},
                "request_id": server._id("req"),
            },
        }
    assert isinstance(params, dict)
    answer = answer_for(
        server.answer_seed(params),
        cfg.output_tokens,
        params["max_tokens"],
        params.get("stop_sequences"),
    )
    return {
        "type": "succeeded",
        "message": {
            "id": server._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence,
            "usage": {
                "input_tokens": analysis.total,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": answer.output_tokens,
            },
        },
    }
