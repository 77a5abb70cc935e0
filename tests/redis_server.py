"""Start and stop a real, throwaway redis-server on a free loopback port.

Used by the Redis test fixtures (`tests/conftest_redis.py`) and the benches. The server runs
in a temporary directory with persistence off (``--save '' --appendonly no``) so it writes
nothing and starts in milliseconds; `start` returns once ``PING`` answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["INSTALL_HINT", "RedisServer", "find_redis_server"]

INSTALL_HINT = (
    "redis-server is not on PATH: install it (apt-get install redis-server, "
    "or brew install redis) to run the Redis cache tests"
)


def find_redis_server() -> str | None:
    """Path of the redis-server executable, or None."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, executable: str | None = None, *, startup_timeout: float = 10.0) -> None:
        exe = executable or find_redis_server()
        if exe is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.executable = exe
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, same_port: bool = False) -> RedisServer:
        """Start the server and wait until it answers PING.

        On a free port, or with `same_port` on the port it had before (to bring a killed
        server back where its clients expect it).
        """
        if self.running:
            return self
        self._dir = self._dir or tempfile.mkdtemp(prefix="asyncthrift-redis-")
        last = ""
        for _ in range(1 if same_port and self.port else 5):
            # a free port can be taken between probing and binding: retry on another
            if not (same_port and self.port):
                self.port = _free_port()
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--daemonize", "no",
                    "--loglevel", "warning",
                    "--logfile", os.path.join(self._dir, "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if _ping(self.port):
                    return self
                time.sleep(0.01)
            last = self._reap()
        raise RuntimeError(f"redis-server did not start on loopback: {last[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown); the port stops answering at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self._reap()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _reap(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        try:
            with open(os.path.join(self._dir or "", "redis.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return f"RedisServer(port={self.port}, running={self.running}, pid={pid})"
