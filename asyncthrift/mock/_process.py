"""Run the mock in a child process, and observe or reset a mock from outside.

A benchmark's client and the mock must not share one event loop (or one CPU core): the
server's work would be charged to the client's latency and throughput. The child gets the
full `MockConfig` as JSON, so anything a `MockServer` accepts works out of process too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ._config import MockConfig

__all__ = ["remote_reset", "remote_stats", "spawn_mock_process"]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]

# The child needs only asyncthrift.mock, .limits and .bucket. Importing the `asyncthrift`
# package proper would import the SDK through the client (seconds of startup on a busy
# box), so the child registers a bare package object with the right __path__ instead.
_BOOTSTRAP = """\
import sys, types
package = types.ModuleType("asyncthrift")
package.__path__ = [sys.argv.pop(1)]
sys.modules["asyncthrift"] = package
from asyncthrift.mock.__main__ import main
sys.exit(main())
"""


@contextlib.contextmanager
def spawn_mock_process(
    config: MockConfig | None = None,
    *,
    cpu: int | None = None,
    startup_timeout: float = 20.0,
    **overrides: Any,
) -> Iterator[str]:
    """Run the mock's command line in a child process with `config` (plus `overrides`);
    yield its base URL.

    `cpu` pins the child to one CPU (Linux), to keep it off the client's core. The child is
    terminated (SIGTERM, then SIGKILL after 5 s) when the block exits. Observe it with
    `remote_stats(base_url)` and reset it with `remote_reset(base_url)`.
    """
    cfg = config if config is not None else MockConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    with tempfile.TemporaryDirectory(prefix="asyncthrift-mock-") as tmp:
        ready = Path(tmp) / "ready"
        argv = [
            sys.executable,
            "-c",
            _BOOTSTRAP,
            str(_PACKAGE_DIR),
            "--config-json",
            cfg.to_json(),
            "--ready-file",
            str(ready),
            "--quiet",
        ]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if ready.exists():
                    base_url = ready.read_text().strip()
                    if base_url:
                        break
                code = proc.poll()
                if code is not None:
                    raise RuntimeError(f"the mock process exited with status {code} at startup")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the mock process did not start in {startup_timeout} s")
                time.sleep(0.01)
            yield base_url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _call(url: str, method: str, timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = orjson.loads(resp.read())
    if not isinstance(data, dict):
        raise ValueError(f"unexpected answer from {url}: {data!r}")
    return data


def remote_stats(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /_mock/stats`` of a mock anywhere (blocking; use it outside hot loops)."""
    return _call(base_url.rstrip("/") + "/_mock/stats", "GET", timeout)


def remote_reset(base_url: str, timeout: float = 5.0) -> None:
    """``POST /_mock/reset``: zero the counters and refill the buckets of a remote mock."""
    _call(base_url.rstrip("/") + "/_mock/reset", "POST", timeout)
