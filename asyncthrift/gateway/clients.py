"""Who may call the gateway: the clients the keys file (or ``--client-key``) defines, and
the lookup that turns a request's key into one of them.

The directory keeps only a SHA-256 digest of each client key, never the key: a key that
leaks into a log, a metric or an error from here is impossible by construction, and a
lookup compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

Lane = Literal["interactive", "default", "batch"]

#: The lanes, most urgent first (the scheduler's priorities).
LANES: Final[tuple[Lane, ...]] = get_args(Lane)


@dataclass(frozen=True, slots=True)
class ClientQuota:
    """A client's own limits, per minute, enforced across replicas (None: no limit)."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayClient:
    """One caller of the gateway, as the keys file (or --client-key) defines it. Never holds
    the key itself: the directory keeps only a digest."""

    name: str  # label in metrics, logs, the status page
    lane: Lane = "default"  # used when the request has no asyncthrift-priority header
    quota: ClientQuota | None = None
    spend_cap_usd: float | None = None
    spend_period: str | None = None  # as `asyncthrift.stores.spend.check_period` accepts


#: The client every request is when the gateway runs open (no client keys, loopback only).
ANONYMOUS: Final = GatewayClient(name="anonymous")


def key_digest(key: str) -> bytes:
    """The digest the directory stores and compares instead of a key."""
    return hashlib.sha256(key.encode()).digest()


class ClientDirectory:
    """The clients by key digest; ``open`` when no key is configured (every request is
    `ANONYMOUS`: the gateway refuses to bind a non-loopback host so)."""

    __slots__ = ("_by_digest", "_clients")

    def __init__(self, entries: Iterable[tuple[str, GatewayClient]] = ()) -> None:
        self._by_digest: dict[bytes, GatewayClient] = {}
        for key, client in entries:
            self._by_digest[key_digest(key)] = client
        self._clients = tuple(dict.fromkeys(self._by_digest.values()))

    @property
    def open(self) -> bool:
        """True when no client key is configured: anyone on loopback may call."""
        return not self._by_digest

    @property
    def clients(self) -> tuple[GatewayClient, ...]:
        """Every configured client (``(ANONYMOUS,)`` when open), once each."""
        return self._clients or (ANONYMOUS,)

    def authenticate(self, headers: Mapping[str, str]) -> GatewayClient | None:
        """The client whose key the request carries (``x-api-key``, else ``Authorization:
        Bearer``), `ANONYMOUS` when the directory is open, None when the key is unknown."""
        if self.open:
            return ANONYMOUS
        key = presented_key(headers)
        if key is None:
            return None
        wanted = key_digest(key)
        for digest, client in self._by_digest.items():
            if hmac.compare_digest(digest, wanted):
                return client
        return None


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``x-api-key``, else a ``Bearer`` authorization."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
