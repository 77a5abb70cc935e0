"""The gateway's options (flags over ``ASYNCTHRIFT_*`` over defaults, the TOML keys file,
``--limits``), the client directory, and what each failure becomes in the API's envelope.
In-process and instant: no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from asyncthrift import Limits
from asyncthrift.errors import ClientClosed, DeadlineExceeded, InvalidArgument, QueueFull
from asyncthrift.gateway.clients import ANONYMOUS, ClientDirectory, ClientQuota, GatewayClient
from asyncthrift.gateway.config import GatewayConfig, GatewayConfigError, parse_limits
from asyncthrift.gateway.errors import failure_of

ENV = {"ANTHROPIC_API_KEY": "sk-ant-upstream"}


def resolve(flags: dict[str, Any] | None = None, **env: str) -> GatewayConfig:
    return GatewayConfig.resolve(flags or {}, {**ENV, **env})


def test_defaults_then_environment_then_flags() -> None:
    config = resolve()
    assert (config.host, config.port, config.max_wait, config.grace) == (
        "127.0.0.1",
        8080,
        600.0,
        30.0,
    )
    assert config.base_url == "https://api.anthropic.com"
    assert config.upstream_keys == ("sk-ant-upstream",)
    assert config.directory().open
    env = {"ASYNCTHRIFT_PORT": "9000", "ASYNCTHRIFT_PACK": "true", "ASYNCTHRIFT_MAX_WAIT": "5"}
    assert (resolve(**env).port, resolve(**env).pack, resolve(**env).max_wait) == (9000, True, 5)
    assert resolve({"port": "7000"}, **env).port == 7000  # the flag wins
    keys = resolve(ASYNCTHRIFT_CLIENT_KEYS="a, b").client_entries
    assert [k for k, _ in keys] == ["a", "b"]
    assert "sk-ant-upstream" not in repr(resolve())


@pytest.mark.parametrize(
    ("flags", "env", "names"),
    [
        ({"port": "http"}, {}, "--port (ASYNCTHRIFT_PORT)"),
        ({}, {"ASYNCTHRIFT_GRACE": "-1"}, "--grace (ASYNCTHRIFT_GRACE)"),
        ({}, {"ASYNCTHRIFT_PACK": "maybe"}, "--pack (ASYNCTHRIFT_PACK)"),
        ({"cache": "disk"}, {}, "--cache"),
        ({"limits": "tier9"}, {}, "--limits"),
        ({"host": "0.0.0.0"}, {}, "--client-key"),  # open gateway on a public interface
        ({}, {"ANTHROPIC_API_KEY": ""}, "ANTHROPIC_API_KEY"),
        ({"max_body_bytes": "0"}, {}, "--max-body-bytes"),
    ],
)
def test_a_bad_option_says_what_to_change(
    flags: dict[str, Any], env: dict[str, str], names: str
) -> None:
    with pytest.raises(GatewayConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        resolve(flags, **env)


def test_a_public_host_is_allowed_with_client_keys() -> None:
    config = resolve({"host": "0.0.0.0", "client_key": ["k1"]})
    assert not config.directory().open
    assert resolve({"host": "::1"}).host == "::1"  # loopback v6 may stay open


def test_limits_accept_tiers_rates_and_families() -> None:
    assert parse_limits(None) is None
    assert parse_limits("tier2") == "tier2"
    assert parse_limits("rpm=50,otpm=8000") == Limits(rpm=50, otpm=8000)
    compressed = parse_limits("tier1,period=6")
    assert isinstance(compressed, dict) and compressed["haiku"].period == 6
    assert parse_limits("sonnet:rpm=3,period=0.9;haiku:rpm=1") == {
        "sonnet": Limits(rpm=3, period=0.9),
        "haiku": Limits(rpm=1),
    }
    for bad in ("rpm=fast", "rpm=1,rpm=2", "burst=3", "rpm=-1", "sonnet:tier2;haiku:rpm=1"):
        with pytest.raises(GatewayConfigError):
            parse_limits(bad)


KEYS = """
[upstream]
keys = ["sk-ant-one", "sk-ant-two"]
budget = "org"

[[clients]]
name = "ci"
key = "ci-key"
lane = "batch"
rpm = 100
otpm = 20000
spend_cap_usd = 5
spend_period = "day"

[[clients]]
name = "notebook"
key = "nb-key"
"""


def test_the_keys_file_gives_the_pool_and_the_clients(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    config = resolve({"keys_file": str(path)}, ANTHROPIC_API_KEY="")
    assert config.upstream_keys == ("sk-ant-one", "sk-ant-two")
    assert config.upstream_budget == "org"
    clients = dict(config.client_entries)
    assert clients["ci-key"] == GatewayClient(
        name="ci",
        lane="batch",
        quota=ClientQuota(rpm=100, otpm=20000),
        spend_cap_usd=5.0,
        spend_period="day",
    )
    assert clients["nb-key"] == GatewayClient(name="notebook")
    assert all("ci-key" not in repr(c) and "nb-key" not in repr(c) for c in clients.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[clients]]\nname = 'a'\n", "needs a name"),
        ("[[clients]]\nname = 'a'\nkey = 'k'\nlane = 'urgent'\n", "lane must be"),
        ("[[clients]]\nname = 'a'\nkey = 'k'\nrpm = 0\n", "rpm must be"),
        ("[[clients]]\nname = 'a'\nkey = 'k'\ncolour = 'red'\n", "unknown field"),
        ("[[clients]]\nname = 'a'\nkey = 'k'\nspend_period = 'fortnight'\n", "spend_period"),
        ("[[clients]]\nname='a'\nkey='k'\n[[clients]]\nname='a'\nkey='j'\n", "unique"),
        ("[upstream]\nkeys = 'one'\n", "list of keys"),
        ("not = [toml", "not valid TOML"),
    ],
)
def test_a_bad_keys_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(GatewayConfigError, match=message):
        resolve({"keys_file": str(path)})
    with pytest.raises(GatewayConfigError, match="cannot read"):
        resolve({"keys_file": str(tmp_path / "missing.toml")})


def test_the_directory_knows_keys_by_digest_only() -> None:
    alice = GatewayClient(name="alice", lane="interactive")
    directory = ClientDirectory([("alice-secret", alice)])
    assert directory.authenticate({"x-api-key": "alice-secret"}) is alice
    assert directory.authenticate({"authorization": "Bearer alice-secret"}) is alice
    assert directory.authenticate({"x-api-key": "alice-secre"}) is None
    assert directory.authenticate({"authorization": "Basic alice-secret"}) is None
    assert directory.authenticate({}) is None
    assert ClientDirectory().authenticate({}) is ANONYMOUS


def _status_error(status: int, body: Any, headers: dict[str, str]) -> anthropic.APIStatusError:
    request = httpx.Request("POST", "https://api.example/v1/messages")
    response = httpx.Response(status, headers=headers, json=body, request=request)
    return anthropic.APIStatusError("upstream said no", response=response, body=body)


def test_failures_become_the_apis_envelope_and_a_429_never_passes() -> None:
    late = failure_of(DeadlineExceeded("not admitted in 5 s", retry_after=2.5))
    assert (late.status, late.retry_after) == (529, 2.5)
    assert late.response().headers["retry-after"] == "3"
    assert failure_of(QueueFull("full")).status == 529
    assert failure_of(ClientClosed("closing")).status == 503
    assert failure_of(InvalidArgument("max_tokens=-1")).status == 400
    limited = failure_of(_status_error(429, {"type": "error"}, {"retry-after": "7"}))
    assert (limited.status, limited.retry_after) == (529, 7.0)
    body = orjson.loads(limited.response().body)
    assert body["error"]["type"] == "overloaded_error"
    upstream = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    passed = failure_of(_status_error(400, upstream, {"request-id": "req_1"}))
    response = passed.response()
    assert (response.status_code, orjson.loads(response.body)) == (400, upstream)
    assert response.headers["request-id"] == "req_1"
    internal = failure_of(RuntimeError("sk-ant-secret leaked?"))
    assert internal.status == 500 and "sk-ant" not in internal.message
