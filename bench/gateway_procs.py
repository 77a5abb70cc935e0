"""Processes of the gateway bench: gateway replicas and LiteLLM proxies on free loopback ports.

`bench/bench_gateway.py` runs every server in its own process, as a deployment would: each
`Server` is started with its output in a log file, is ready once its health route answers
200 (the gateway's ``/healthz``, the LiteLLM proxy's ``/health/liveliness``), and is stopped
(SIGTERM, then SIGKILL of its own process group after a grace period) when the block that
started it exits, whatever happened inside. A server that exits before it is ready raises
with the tail of its log, so a bad option or a missing dependency shows as what it is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_fastapi import cpu_seconds, free_port

from asyncthrift import Limits

__all__ = [
    "LITELLM_VENV",
    "Server",
    "children_cpu",
    "gateway_replicas",
    "limits_option",
    "litellm_proxies",
    "litellm_unavailable",
    "passthrough_proxies",
]

ROOT = Path(__file__).resolve().parents[1]
#: The throwaway venv the LiteLLM proxy runs from (its extras never go into the global
#: environment): ``python -m venv --system-site-packages /tmp/litellm-venv`` and the proxy
#: extra's requirements installed there.
LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/tmp/litellm-venv"))


@dataclass
class Server:
    """One started server: its base URL, process and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        return cpu_seconds(self.proc.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def limits_option(limits: Limits) -> str:
    """``--limits`` for the gateway: ``rpm=…,itpm=…,otpm=…`` (and ``period=…`` if not 60)."""
    parts = [
        f"{name}={round(value)}"
        for name, value in (("rpm", limits.rpm), ("itpm", limits.itpm), ("otpm", limits.otpm))
        if value is not None
    ]
    if limits.period != 60.0:
        parts.append(f"period={limits.period:g}")
    return ",".join(parts)


def _get_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def _wait_ready(server: Server, health: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.proc.returncode} before it was "
                f"ready; its log ends:\n{server.log_tail()}"
            )
        if _get_status(server.url + health) == 200:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{server.name} did not answer {health} within {within:g} s; its log ends:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.05)


def _stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM the server, then SIGKILL its process group if it is still there."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # its own session (start_new_session): the group is this server and its children
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5.0)


@contextmanager
def _started(
    argvs: Sequence[tuple[str, list[str], str]],
    *,
    env: dict[str, str],
    log_dir: Path,
    health: str,
    within: float,
) -> Iterator[list[Server]]:
    """Start every (name, argv, url) at once, wait until all are ready; stop all at exit."""
    servers: list[Server] = []
    with ExitStack() as stack:
        for name, argv, url in argvs:
            log = log_dir / f"{name}.log"
            out = stack.enter_context(log.open("wb"))
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            server = Server(name, url, proc, log)
            servers.append(server)
            stack.callback(_stop, server)
        for server in servers:
            _wait_ready(server, health, within)
        yield servers


@contextmanager
def gateway_replicas(
    count: int,
    *,
    upstream: str,
    limits: Limits | None,
    shared: str | None,
    client_key: str,
    log_dir: Path,
    extra: Sequence[str] = (),
    within: float = 60.0,
) -> Iterator[list[Server]]:
    """`count` processes of ``python -m asyncthrift serve`` in front of `upstream`.

    Each on its own free port, with ``--limits`` (if given), ``--shared`` (if given: the
    replicas share one budget through that Redis) and one ``--client-key``; the upstream key
    from ``ANTHROPIC_API_KEY``. Ready once ``/healthz`` answers 200.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "ANTHROPIC_API_KEY": "k-upstream",
    }
    # BENCH_GATEWAY_DEBUG_SHARED=1: the shared budgets' own debug lines (every Redis round
    # trip: what was needed, asked, given back, and the answer) in each replica's log
    start = ["-m", "asyncthrift"]
    if os.environ.get("BENCH_GATEWAY_DEBUG_SHARED"):
        start = ["-c", _DEBUG_SHARED]
    argvs = []
    for i in range(count):
        port = free_port()
        argv = [sys.executable, *start, "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--base-url", upstream, "--client-key", client_key]
        if limits is not None:
            argv += ["--limits", limits_option(limits)]
        if shared is not None:
            argv += ["--shared", shared]
        argv += list(extra)
        argvs.append((f"gateway-{i}", argv, f"http://127.0.0.1:{port}"))
    with _started(argvs, env=env, log_dir=log_dir, health="/healthz", within=within) as servers:
        yield servers


@contextmanager
def passthrough_proxies(count: int, *, upstream: str, log_dir: Path) -> Iterator[list[Server]]:
    """`count` processes of `bench/gateway_passthrough.py` (bytes in, bytes out)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(Path(__file__).with_name("gateway_passthrough.py"))
    argvs = []
    for i in range(count):
        port = free_port()
        argv = [sys.executable, script, "--port", str(port), "--upstream", upstream]
        argvs.append((f"passthrough-{i}", argv, f"http://127.0.0.1:{port}"))
    with _started(argvs, env=env, log_dir=log_dir, health="/healthz", within=60.0) as servers:
        yield servers


_DEBUG_SHARED = """\
import logging, sys
from asyncthrift.tools.cli import main
logging.getLogger("asyncthrift.shared").setLevel(logging.DEBUG)
sys.exit(main(sys.argv[1:]))
"""


def litellm_unavailable() -> str | None:
    """Why the LiteLLM proxy cannot run here, or None when its venv can start it."""
    exe = LITELLM_VENV / "bin" / "python"
    if not exe.exists():
        return (
            f"no LiteLLM proxy venv at {LITELLM_VENV} (make one: python -m venv "
            f"--system-site-packages {LITELLM_VENV}; then install the proxy extra there)"
        )
    probe = subprocess.run(
        [str(exe), "-c", "import litellm.proxy.proxy_server"],
        capture_output=True,
        text=True,
        env={**os.environ, **_LITELLM_ENV},
        timeout=180,
        check=False,
    )
    if probe.returncode != 0:
        return "the LiteLLM proxy does not import: " + probe.stderr.strip().splitlines()[-1]
    return None


#: The proxy's command line (``litellm``): its console script is not in the venv's bin.
_LITELLM_MAIN = "from litellm.proxy.proxy_cli import run_server; run_server()"

#: LiteLLM offline: its bundled cost map and beta headers, not the network; quiet logs.
_LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY": "False",
}


def litellm_config(
    *, model: str, upstream: str, limits: Limits, redis_port: int, master_key: str
) -> str:
    """The proxy's YAML: one Anthropic deployment at the mock with the key's three limits,
    and its documented multi-instance setup (``router_settings`` with Redis)."""
    return f"""\
model_list:
  - model_name: {model}
    litellm_params:
      model: anthropic/{model}
      api_base: {upstream}
      api_key: k-upstream
      rpm: {round(limits.rpm or 0)}
      itpm: {round(limits.itpm or 0)}
      otpm: {round(limits.otpm or 0)}
router_settings:
  routing_strategy: simple-shuffle
  optional_pre_call_checks: ["enforce_model_rate_limits"]
  redis_host: 127.0.0.1
  redis_port: {redis_port}
  num_retries: 0
litellm_settings:
  num_retries: 0
  request_timeout: 600
general_settings:
  master_key: {master_key}
"""


@contextmanager
def litellm_proxies(
    count: int,
    *,
    model: str,
    upstream: str,
    limits: Limits,
    redis_port: int,
    master_key: str,
    log_dir: Path,
    within: float = 240.0,
) -> Iterator[list[Server]]:
    """`count` LiteLLM proxy processes (one worker each) sharing one Redis."""
    config = log_dir / "litellm.yaml"
    config.write_text(
        litellm_config(
            model=model,
            upstream=upstream,
            limits=limits,
            redis_port=redis_port,
            master_key=master_key,
        )
    )
    env = {**os.environ, **_LITELLM_ENV}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{LITELLM_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    argvs = []
    for i in range(count):
        port = free_port()
        argv = [str(LITELLM_VENV / "bin" / "python"), "-c", _LITELLM_MAIN, "--config", str(config)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        argvs.append((f"litellm-{i}", argv, f"http://127.0.0.1:{port}"))
    with _started(
        argvs, env=env, log_dir=log_dir, health="/health/liveliness", within=within
    ) as servers:
        yield servers


def children_cpu(marker: str) -> float:
    """CPU seconds of this process's children whose command line contains `marker` (the
    mock, started by `spawn_mock_process`, which does not expose its pid)."""
    me = str(os.getpid())
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[1] != me:
                continue
            if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                total += cpu_seconds(int(entry.name))
        except (OSError, IndexError):
            continue
    return total
