"""The gateway's options, checked once: flags, ``ASYNCTHRIFT_*`` environment variables, the
TOML keys file. Everything the server needs is in one frozen `GatewayConfig`; a bad option
raises `GatewayConfigError` naming the option and what to give instead, before anything
binds a port or opens a connection.

A flag wins over its environment variable, which wins over the default. The upstream keys
come from the keys file's ``[upstream]`` pool, else ``ANTHROPIC_API_KEY``.

No client key configured (no ``--client-key``, no ``[[clients]]``): the gateway is *open*
and serves anyone who can reach it, so it binds only a loopback host then (and warns);
binding any other host without client keys is refused.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..errors import InvalidArgument
from ..scheduling.limits import PRESETS, Limits, LimitsSpec
from ..stores.spend import check_period
from .clients import LANES, ClientDirectory, ClientQuota, GatewayClient

__all__ = ["ENV_PREFIX", "GatewayConfig", "GatewayConfigError", "parse_limits"]

ENV_PREFIX: Final = "ASYNCTHRIFT_"
#: The Messages API's own request size limit (32 MB).
DEFAULT_MAX_BODY: Final = 32_000_000
DEFAULT_BASE_URL: Final = "https://api.anthropic.com"


class GatewayConfigError(InvalidArgument):
    """An option of ``asyncthrift serve`` has a value it cannot take; the message says which
    option (flag and environment variable) and what to give instead."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything ``asyncthrift serve`` runs with, checked (build it with `resolve`)."""

    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = DEFAULT_BASE_URL
    limits: LimitsSpec = None
    shared: str | None = None
    cache: str | None = None
    pack: bool = False
    max_wait: float = 600.0
    grace: float = 30.0
    max_body_bytes: int = DEFAULT_MAX_BODY
    upstream_keys: tuple[str, ...] = field(default=(), repr=False)
    upstream_budget: str | None = None
    client_entries: tuple[tuple[str, GatewayClient], ...] = field(default=(), repr=False)
    access_log: bool = True

    def directory(self) -> ClientDirectory:
        """The clients, by key digest (open when none is configured)."""
        return ClientDirectory(self.client_entries)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every key the gateway knows (upstream and clients): what logs must never show."""
        return self.upstream_keys + tuple(key for key, _ in self.client_entries)

    @classmethod
    def resolve(
        cls, flags: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> GatewayConfig:
        """The configuration from `flags` (option name to value, None: not given) over the
        ``ASYNCTHRIFT_*`` variables of `env` (default ``os.environ``), checked."""
        env = os.environ if env is None else env
        get = _Lookup(flags, env)
        pool, budget, clients = _keys_file(get.text("keys_file"))
        for key in get.keys("client_key"):
            clients.append((key, GatewayClient(name=f"key-{len(clients) + 1}")))
        upstream = tuple(pool) or _env_key(env)
        config = cls(
            host=get.text("host") or "127.0.0.1",
            port=get.number("port", int, 8080, low=0, high=65535),
            base_url=(get.text("base_url") or DEFAULT_BASE_URL).rstrip("/"),
            limits=parse_limits(get.text("limits")),
            shared=get.text("shared"),
            cache=_cache(get.text("cache")),
            pack=get.flag("pack"),
            max_wait=get.number("max_wait", float, 600.0, low=0.0),
            grace=get.number("grace", float, 30.0, low=0.0),
            max_body_bytes=get.number("max_body_bytes", int, DEFAULT_MAX_BODY, low=1),
            upstream_keys=upstream,
            upstream_budget=budget,
            client_entries=tuple(clients),
            access_log=not get.flag("no_access_log"),
        )
        config.check_binding()
        return config

    def check_binding(self) -> None:
        """Refuse to serve an open gateway (no client key) on a non-loopback host."""
        if not self.client_entries and not _is_loopback(self.host):
            raise GatewayConfigError(
                f"--host {self.host} is reachable from other machines but no client key is "
                "configured, so anyone could spend your upstream key: give --client-key KEY "
                "(ASYNCTHRIFT_CLIENT_KEYS) or a --keys-file with [[clients]], or bind 127.0.0.1"
            )
        if not self.upstream_keys:
            raise GatewayConfigError(
                "no upstream API key: set ANTHROPIC_API_KEY or give a --keys-file with an "
                "[upstream] keys = [...] pool"
            )


class _Lookup:
    """A flag's value, else its ``ASYNCTHRIFT_*`` variable's, parsed with a clear error."""

    def __init__(self, flags: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.flags = flags
        self.env = env

    def raw(self, name: str) -> Any:
        value = self.flags.get(name)
        if value is None or value is False or value == []:
            value = self.env.get(ENV_PREFIX + name.upper()) or None
        return value

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else str(value).strip() or None

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("", "0", "false", "no", "off"):
            return False
        raise GatewayConfigError(f"{_names(name)} must be true or false, got {value!r}")

    def keys(self, name: str) -> list[str]:
        given = self.flags.get(name)
        if given:
            return [str(k) for k in given]
        from_env = self.env.get(ENV_PREFIX + name.upper() + "S") or ""
        return [k.strip() for k in from_env.split(",") if k.strip()]

    def number(
        self,
        name: str,
        kind: type[int] | type[float],
        default: float,
        *,
        low: float,
        high: float = math.inf,
    ) -> Any:
        value = self.raw(name)
        if value is None:
            return kind(default)
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number) or not low <= number <= high:
            bound = f"between {low:g} and {high:g}" if high < math.inf else f">= {low:g}"
            what = "whole number" if kind is int else "number"
            raise GatewayConfigError(f"{_names(name)} must be a {what} {bound}, got {value!r}")
        return number


def _names(name: str) -> str:
    return f"--{name.replace('_', '-')} ({ENV_PREFIX}{name.upper()})"


def _env_key(env: Mapping[str, str]) -> tuple[str, ...]:
    key = (env.get("ANTHROPIC_API_KEY") or "").strip()
    return (key,) if key else ()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cache(spec: str | None) -> str | None:
    if spec is None or spec == "memory" or spec.startswith(("redis://", "rediss://")):
        return spec
    raise GatewayConfigError(
        f"--cache (ASYNCTHRIFT_CACHE) must be 'memory' or a redis://... URL, got {spec!r}"
    )


def parse_limits(spec: str | None) -> LimitsSpec:
    """``--limits``: a tier preset (``tier2``), or ``rpm=N,itpm=N,otpm=N`` (any subset), either
    optionally with ``period=SECONDS`` (60 for the real API; shorter for a compressed mock);
    or per model family, ``;``-separated: ``sonnet:rpm=50,otpm=8000;haiku:rpm=100`` (a
    family is what `asyncthrift.Limits` tables take: ``sonnet``, a model id, or ``*``).
    None: learn the limits from the upstream's headers."""
    if spec is None:
        return None
    if ";" in spec or (":" in spec and "=" in spec.split(":", 1)[1]):
        table: dict[str, Limits] = {}
        for part in (p.strip() for p in spec.split(";") if p.strip()):
            family, colon, rates = part.partition(":")
            one = _one_limits(rates, spec) if colon and family.strip() else None
            if not isinstance(one, Limits):
                raise GatewayConfigError(
                    f"--limits {spec!r}: each ;-separated part must be FAMILY:rpm=N,..."
                    f" (a tier is not allowed there), got {part!r}"
                )
            table[family.strip()] = one
        return table
    return _one_limits(spec, spec)


def _one_limits(text: str, spec: str) -> LimitsSpec:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    tier = [p for p in parts if "=" not in p]
    values: dict[str, float] = {}
    for part in parts:
        if "=" not in part:
            continue
        name, _, number = part.partition("=")
        name = name.strip().lower()
        if name not in ("rpm", "itpm", "otpm", "period") or name in values:
            raise GatewayConfigError(
                f"--limits: unknown or repeated {name!r} in {spec!r}; use a tier "
                f"({', '.join(sorted(PRESETS))}) or rpm=N,itpm=N,otpm=N[,period=SECONDS]"
            )
        try:
            values[name] = float(number)
        except ValueError:
            raise GatewayConfigError(f"--limits: {name}={number!r} is not a number") from None
    period = values.pop("period", 60.0)
    try:
        if len(tier) == 1 and tier[0] in PRESETS and not values:
            if period == 60.0:
                return tier[0]
            return {c: Limits(v.rpm, v.itpm, v.otpm, period) for c, v in PRESETS[tier[0]].items()}
        if not tier and values:
            return Limits(values.get("rpm"), values.get("itpm"), values.get("otpm"), period)
    except InvalidArgument as exc:
        raise GatewayConfigError(f"--limits {spec!r}: {exc}") from None
    raise GatewayConfigError(
        f"--limits must be a tier ({', '.join(sorted(PRESETS))}) or rpm=N,itpm=N,otpm=N"
        f"[,period=SECONDS], got {spec!r}"
    )


def _keys_file(
    path: str | None,
) -> tuple[list[str], str | None, list[tuple[str, GatewayClient]]]:
    """The upstream pool, its shared budget name and the clients of the TOML keys file."""
    if path is None:
        return [], None, []
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise GatewayConfigError(f"--keys-file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise GatewayConfigError(f"--keys-file {path}: not valid TOML ({exc})") from None
    upstream = data.get("upstream", {})
    if not isinstance(upstream, dict):
        raise GatewayConfigError(f"--keys-file {path}: [upstream] must be a table")
    pool = upstream.get("keys", [])
    if not isinstance(pool, list) or not all(isinstance(k, str) and k for k in pool):
        raise GatewayConfigError(f"--keys-file {path}: [upstream] keys must be a list of keys")
    budget = upstream.get("budget")
    if budget is not None and not isinstance(budget, str):
        raise GatewayConfigError(f"--keys-file {path}: [upstream] budget must be a name")
    entries = data.get("clients", [])
    if not isinstance(entries, list):
        raise GatewayConfigError(f"--keys-file {path}: use [[clients]] tables for clients")
    clients = [_client(path, i, entry) for i, entry in enumerate(entries, 1)]
    names = [c.name for _, c in clients]
    if len(set(names)) != len(names) or len({k for k, _ in clients}) != len(clients):
        raise GatewayConfigError(f"--keys-file {path}: client names and keys must be unique")
    return list(pool), budget, clients


_CLIENT_FIELDS: Final = frozenset(
    {"name", "key", "lane", "rpm", "itpm", "otpm", "spend_cap_usd", "spend_period"}
)


def _client(path: str, index: int, entry: object) -> tuple[str, GatewayClient]:
    where = f"--keys-file {path}: client #{index}"
    if not isinstance(entry, dict):
        raise GatewayConfigError(f"{where} must be a [[clients]] table")
    unknown = sorted(set(entry) - _CLIENT_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_CLIENT_FIELDS))
        raise GatewayConfigError(f"{where}: unknown field(s) {unknown}; allowed: {allowed}")
    name, key, lane = entry.get("name"), entry.get("key"), entry.get("lane", "default")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise GatewayConfigError(f"{where} needs a name = '...' and a key = '...'")
    if lane not in LANES:
        raise GatewayConfigError(f"{where}: lane must be one of {', '.join(LANES)}")
    rates = [_rate(where, entry, r) for r in ("rpm", "itpm", "otpm")]
    quota = ClientQuota(*rates) if any(r is not None for r in rates) else None
    cap = entry.get("spend_cap_usd")
    if cap is not None and (
        isinstance(cap, bool) or not isinstance(cap, int | float) or not cap > 0
    ):
        raise GatewayConfigError(f"{where}: spend_cap_usd must be a positive number")
    period = entry.get("spend_period")
    try:
        check_period(period)
    except InvalidArgument as exc:
        raise GatewayConfigError(f"{where}: {exc}") from None
    client = GatewayClient(
        name=name,
        lane=lane,
        quota=quota,
        spend_cap_usd=None if cap is None else float(cap),
        spend_period=period,
    )
    return key, client


def _rate(where: str, entry: Mapping[str, object], name: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GatewayConfigError(f"{where}: {name} must be a positive whole number per minute")
    return value


def env_names() -> Sequence[str]:
    """Every environment variable the gateway reads (for ``--help``)."""
    names = ("host", "port", "base_url", "limits", "shared", "cache", "pack", "client_keys")
    rest = ("keys_file", "max_wait", "grace", "max_body_bytes", "no_access_log")
    return [ENV_PREFIX + n.upper() for n in names + rest]
