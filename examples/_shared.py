"""What both chat examples share: the model, the admission deadline, limits, the page."""

from __future__ import annotations

import os
from typing import Any

from asyncthrift import Limits

MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")
DEADLINE = float(os.environ.get("THRIFT_DEADLINE", "10"))
"""Seconds a browser request may wait for admission before it gets a 504."""


def limits_from_env() -> Any:
    """``THRIFT_LIMITS`` (a preset name) or ``THRIFT_LIMITS_RPM/_ITPM/_OTPM`` numbers per
    ``THRIFT_LIMITS_PERIOD`` seconds (default 60; shorter only to match a compressed mock)."""
    preset = os.environ.get("THRIFT_LIMITS")
    if preset:
        return preset
    nums = {k: os.environ.get(f"THRIFT_LIMITS_{k.upper()}") for k in ("rpm", "itpm", "otpm")}
    if not any(nums.values()):
        return None
    period = float(os.environ.get("THRIFT_LIMITS_PERIOD", "60"))
    return Limits(**{k: float(v) for k, v in nums.items() if v}, period=period)


# The single HTML page: type, send, watch the answer stream in.

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>asyncthrift chat</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; }
  textarea { width: 100%; height: 5rem; }
  #answer { white-space: pre-wrap; border-left: 3px solid #ccc; padding-left: 1rem; }
  #status { color: #777; font-size: 0.9rem; }
</style>
<h1>asyncthrift chat</h1>
<textarea id="message">Tell me about token buckets.</textarea>
<button id="send">Send</button>
<p id="status"></p>
<div id="answer"></div>
<script>
// POST /chat answers with the API's own SSE events; read them with fetch (EventSource
// cannot POST) and append every text delta as it arrives.
document.getElementById("send").onclick = async () => {
  const answer = document.getElementById("answer");
  const status = document.getElementById("status");
  answer.textContent = "";
  status.textContent = "waiting for admission...";
  const response = await fetch("/chat", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({message: document.getElementById("message").value}),
  });
  if (!response.ok) {
    const retry = response.headers.get("retry-after");
    status.textContent = `busy (${response.status})` + (retry ? `, retry in ${retry} s` : "");
    return;
  }
  status.textContent = "streaming...";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\\n").find((line) => line.startsWith("data: "));
      if (!data) continue;
      const event = JSON.parse(data.slice(6));
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
        answer.textContent += event.delta.text;
      } else if (event.type === "message_delta") {
        const tokens = event.usage.output_tokens;
        status.textContent = `done: ${event.delta.stop_reason}, ${tokens} tokens`;
      } else if (event.type === "error") {
        status.textContent = `error: ${event.error.message}`;
      }
    }
  }
};
</script>
</html>
"""
