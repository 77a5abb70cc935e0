"""``asyncthrift serve``: the options, the logging, uvicorn, and the SIGTERM drain.

SIGTERM (or SIGINT) does not stop the server at once: the gateway starts draining (new
requests get 503 with ``retry-after``, ``/healthz`` answers 503 so a balancer moves on),
what it has accepted (queued or in flight, streams to their last event) is finished, up to
``--grace`` seconds, and only then does uvicorn close its sockets and the process exit 0.
A second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import signal
import socket
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn

from ..errors import InvalidArgument
from ..observability.request_log import configure_logging
from ..tools._run import run_async
from .access_log import AccessLineHandler
from .app import Gateway, build_app
from .config import DEFAULT_MAX_BODY, ENV_PREFIX, GatewayConfig

__all__ = ["add_serve_arguments", "serve", "serve_command"]

log = logging.getLogger("asyncthrift.gateway")

LOGGERS = ("asyncthrift", "anthropic", "httpx2", "httpx", "uvicorn", "uvicorn.error")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options (each also ``ASYNCTHRIFT_<NAME>``)."""

    def opt(flag: str, help_text: str, **kw: object) -> None:
        env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        p.add_argument(flag, default=None, help=f"{help_text} [{env}]", **kw)  # type: ignore[arg-type]

    opt("--host", "interface to bind (default 127.0.0.1)")
    opt("--port", "port (default 8080; 0 picks a free one)")
    opt("--base-url", "the upstream API (default https://api.anthropic.com)")
    opt(
        "--limits",
        "the upstream key's limits: tier1..tier4, or rpm=N,itpm=N,otpm=N[,period=S], or per "
        "family: sonnet:rpm=N,...;haiku:rpm=N,... (default: learnt from the headers)",
    )
    opt("--shared", "redis://... to share one budget with the other replicas")
    opt("--cache", "answer cache: memory or redis://...")
    opt("--keys-file", "TOML: [upstream] keys, [[clients]] name/key/lane/quota/spend cap")
    opt("--max-wait", "seconds a request may wait for budget before a 529 (default 600)")
    opt("--grace", "seconds to finish accepted requests after SIGTERM (default 30)")
    opt("--max-body-bytes", f"larger request bodies get 413 (default {DEFAULT_MAX_BODY})")
    p.add_argument(
        "--client-key",
        action="append",
        default=None,
        help="a key clients must present (repeatable) [ASYNCTHRIFT_CLIENT_KEYS, comma-separated]",
    )
    p.add_argument(
        "--pack", action="store_true", default=None, help="pack small requests [ASYNCTHRIFT_PACK]"
    )
    p.add_argument(
        "--no-access-log",
        action="store_true",
        default=None,
        help="no per-request log lines [ASYNCTHRIFT_NO_ACCESS_LOG]",
    )
    p.add_argument("--ready-file", default=None, help=argparse.SUPPRESS)


def serve_command(args: argparse.Namespace) -> int:
    """Run the gateway until a signal drains it; 2 on a bad option."""
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "ready_file")}
    ready = Path(args.ready_file) if args.ready_file else None
    try:
        config = GatewayConfig.resolve(flags)
        run_async(serve(config, ready_file=ready))
    except InvalidArgument as exc:  # the options, or the client they make (before serving)
        print(f"asyncthrift serve: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(config: GatewayConfig, *, ready_file: Path | None = None) -> None:
    """Serve until drained (see the module's docstring)."""
    configure_logging(secrets=config.secrets, loggers=LOGGERS)
    for chatty in ("httpx2", "httpx"):  # a line per upstream call: the access log has them
        logging.getLogger(chatty).setLevel(logging.WARNING)
    gateway = Gateway(config)
    gateway.open()  # the client's own checks (shared store, cache, keys) fail here, early
    if gateway.directory.open:
        log.warning(
            "gateway: no client key configured: anyone who can reach %s may call it "
            "(loopback only; give --client-key or a --keys-file to bind another host)",
            config.host,
        )
    access = _access_logger(config.secrets) if config.access_log else None
    app = build_app(gateway, access_log=access)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.create_server((config.host, config.port), family=family)
    port = sock.getsockname()[1]
    uv = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(config.grace)),
        timeout_keep_alive=KEEP_ALIVE,
        server_header=False,
        http=_http_protocol(),  # the loop is uvloop when installed (`run_async`)
    )
    server = _DrainingServer(uv, gateway, url=f"http://{config.host}:{port}", ready=ready_file)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.signalled)
    try:
        await server.serve(sockets=[sock])
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("gateway: stopped")


def _http_protocol() -> str:
    """uvicorn's HTTP parser: httptools (C, the ``uvicorn[standard]`` extra) when it is
    installed, else h11 (pure Python, slower)."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def _access_logger(secrets: tuple[str, ...]) -> logging.Logger:
    """The access log's logger, with its own cheap handler (`AccessLineHandler`) on stderr
    instead of the general redacting one (it does not propagate to it)."""
    access = logging.getLogger("asyncthrift.gateway.access")
    for old in [h for h in access.handlers if isinstance(h, AccessLineHandler)]:
        access.removeHandler(old)
    access.addHandler(AccessLineHandler(sys.stderr, secrets))
    access.propagate = False
    return access


#: Seconds an idle client connection stays open (uvicorn's default: 5). Replicas sit behind
#: a load balancer that keeps its connections to them open and reuses them (nginx's
#: upstream ``keepalive``, Envoy, an ALB: idle timeouts of 60 s); a replica that closes one
#: first races the balancer's next request on it, which then fails (the bench's clients with
#: their connections opened before a burst: one request of 600 lost, `APIConnectionError`,
#: on a connection idle 5 s). Longer than those timeouts, as their docs advise for backends.
KEEP_ALIVE = 75


#: Allocations between two collections of the youngest generation (Python's default: 700).
#: Each request leaves a few thousand objects alive while it is in flight, so at 700 the
#: collector ran several times per request and promoted them; measured at 10 000: 55
#: youngest collections for 1 720 requests instead of 207, 18 ms in all instead of 131 ms.
GC_YOUNGEST_THRESHOLD = 10_000


def _freeze_startup_heap() -> None:
    """Keep what start-up allocated (the SDK's and pydantic's models, the app) out of the
    garbage collector's passes, and collect the youngest generation less often. Without the
    freeze a collection of the oldest generation walks all of it: one took 361 ms in the
    middle of a run of 1 720 requests (with it: 3-22 ms); see bench/RESULTS.md, "Gateway
    pass-through"."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, 10, 10)


class _DrainingServer(uvicorn.Server):
    """uvicorn, with the gateway's signal handling instead of its own."""

    def __init__(
        self, config: uvicorn.Config, gateway: Gateway, *, url: str, ready: Path | None
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.url = url
        self.ready = ready
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (the lifespan has opened the `Thrift`), then say where."""
        await super().startup(sockets=sockets)
        if not self.started:
            return
        log.info("gateway: serving on %s", self.url)
        _freeze_startup_heap()
        if self.ready is not None:  # written whole, then renamed: a reader never sees half
            tmp = self.ready.with_suffix(".tmp")
            tmp.write_text(self.url)
            tmp.replace(self.ready)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # `serve` installs `signalled` on the loop

    def signalled(self) -> None:
        """First signal: drain, then exit. Second: exit now."""
        if self._drain is not None:
            log.warning("gateway: second signal, exiting without waiting")
            self.force_exit = True
            self.should_exit = True
            return
        self.gateway.start_draining()
        self._drain = asyncio.get_running_loop().create_task(self._drained())

    async def _drained(self) -> None:
        grace = self.gateway.config.grace
        if not await self.gateway.inflight.wait_idle(grace):
            log.warning(
                "gateway: %d request(s) still in flight after --grace %ss; exiting",
                self.gateway.inflight.count,
                grace,
            )
        self.should_exit = True
