"""A real ``asyncthrift serve`` process on a free loopback port, for tests and benches.

`spawn_gateway(upstream_url, *options)` starts ``python -m asyncthrift serve --port 0`` with
this checkout's package first on the path, waits until the gateway says it is serving (its
``--ready-file``: written after the lifespan has opened the client), and yields a
`GatewayProcess` (`spawn_gateways`: a list of replicas, started together): its ``url``, the
child ``proc``, and the ``log`` it wrote (stderr, the JSON lines), so a test can read what a
gateway logged. On exit the child gets SIGTERM (it drains), then SIGKILL if it is still
there after `stop_timeout` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncthrift

ROOT = Path(asyncthrift.__file__).resolve().parent.parent


@dataclass
class GatewayProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        """Everything the gateway wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM: the gateway drains and exits by itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


@contextlib.contextmanager
def spawn_gateway(
    upstream_url: str,
    *options: str,
    api_key: str = "upstream-key",
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
    stop_timeout: float = 20.0,
) -> Iterator[GatewayProcess]:
    """Run a gateway in front of `upstream_url` (with `options`); yield it, running."""
    with spawn_gateways(
        upstream_url,
        *options,
        count=1,
        api_key=api_key,
        env=env,
        startup_timeout=startup_timeout,
        stop_timeout=stop_timeout,
    ) as gateways:
        yield gateways[0]


@contextlib.contextmanager
def spawn_gateways(
    upstream_url: str,
    *options: str,
    count: int,
    api_key: str = "upstream-key",
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
    stop_timeout: float = 20.0,
) -> Iterator[list[GatewayProcess]]:
    """`count` replicas alike, started at once (their start-ups overlap), then waited for."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCTHRIFT_")}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    child_env["ANTHROPIC_API_KEY"] = api_key
    child_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="asyncthrift-gateway-") as tmp:
        started: list[tuple[GatewayProcess, Path]] = []
        try:
            for i in range(count):
                ready = Path(tmp) / f"ready-{i}"
                log_path = Path(tmp) / f"stderr-{i}.log"
                argv = [sys.executable, "-m", "asyncthrift", "serve", "--port", "0"]
                argv += ["--base-url", upstream_url, "--ready-file", str(ready), *options]
                with log_path.open("wb") as log:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env
                    )
                started.append((GatewayProcess("", proc, log_path), ready))
            for gateway, ready in started:
                gateway.url = _wait_ready(ready, gateway.proc, gateway.log_path, startup_timeout)
            yield [gateway for gateway, _ in started]
        finally:
            for gateway, _ in started:
                gateway.terminate()
            for gateway, _ in started:
                try:
                    gateway.proc.wait(stop_timeout)
                except subprocess.TimeoutExpired:
                    gateway.proc.kill()
                    gateway.proc.wait()


def _wait_ready(ready: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return ready.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({proc.returncode}):\n{log.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"the gateway did not start within {timeout} s:\n{log.read_text()}")
