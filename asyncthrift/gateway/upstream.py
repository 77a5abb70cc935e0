"""The endpoints besides Messages: ``/v1/models`` (unscheduled, as the library leaves them)
and ``/v1/messages/batches*`` on the library's batch budget (`Thrift.batches`: its own
request bucket, retries on 429/529), so batch traffic never queues behind messages.

Models are the upstream's bytes; a batch (create, retrieve, cancel, delete) is the SDK's
object written back with the fields it was read with, and the batch list the upstream's
page, each with its ``results_url`` pointing at this gateway (a client's SDK fetches results
from that URL); results are JSON lines, one per request, as the API serves them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .errors import GatewayError
from .exchange import Exchange
from .inflight import Serving
from .intake import until_disconnect
from .messages import FORWARDED_HEADERS

if TYPE_CHECKING:
    from anthropic import AsyncAPIResponse

__all__ = ["batch_create", "batch_item", "batch_list", "batch_results", "models"]


def _options(request: Request) -> dict[str, Any]:
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    return {"extra_headers": headers} if headers else {}


async def _raw(response: AsyncAPIResponse[Any], request: Request | None = None) -> Response:
    """The upstream's bytes as they came (a batch list: its ``results_url``s rewritten)."""
    content = await response.read()
    if request is not None and response.status_code == 200:
        page = orjson.loads(content)
        for batch in page.get("data") or ():
            _local_results_url(batch, request)
        content = orjson.dumps(page)
    request_id = response.headers.get("request-id")
    return Response(
        content,
        status_code=response.status_code,
        media_type="application/json",
        headers={"request-id": request_id} if request_id else None,
    )


def _json(model: Any, request: Request) -> Response:
    """A batch as the SDK read it, its ``results_url`` rewritten."""
    request_id = getattr(model, "_request_id", None)  # the SDK keeps it on the object
    body = orjson.loads(model.to_json(indent=None))
    _local_results_url(body, request)
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"request-id": request_id} if isinstance(request_id, str) else None,
    )


def _local_results_url(batch: dict[str, Any], request: Request) -> None:
    """Point a batch's ``results_url`` at this gateway: the SDK fetches results from that
    URL as given, and the upstream's would need the upstream key the client does not have."""
    url = batch.get("results_url")
    if isinstance(url, str) and "/v1/messages/batches/" in url:
        path = url[url.index("/v1/messages/batches/") :]
        batch["results_url"] = str(request.base_url).rstrip("/") + path


async def models(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``GET /v1/models`` and ``GET /v1/models/{model_id}``."""
    resource = gateway.thrift.models.with_raw_response
    query = dict(request.query_params)
    model_id = request.path_params.get("model_id")
    call: Any
    if model_id is None:
        call = resource.list(extra_query=query, **_options(request))
    else:
        call = resource.retrieve(model_id, extra_query=query, **_options(request))
    response: AsyncAPIResponse[Any] = await until_disconnect(request.receive, call)
    return await _raw(response)


async def batch_create(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``POST /v1/messages/batches``: one batch (the API's per-batch limits apply)."""
    body = dict(exchange.body)
    requests = body.pop("requests", None)
    if not isinstance(requests, list):
        raise GatewayError(400, "requests: a list of batch requests is required")
    options = _options(request)
    if body:
        options["extra_body"] = body
    batch = await until_disconnect(
        request.receive, gateway.thrift.batches.create_one(requests, **options)
    )
    return _json(batch, request)


async def batch_list(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``GET /v1/messages/batches``: one page, as asked (``limit``, ``after_id``, ...)."""
    batches = gateway.thrift.batches
    await until_disconnect(request.receive, batches.budget.acquire())
    raw = gateway.thrift.messages.batches.with_raw_response
    call: Any = raw.list(extra_query=dict(request.query_params), **_options(request))
    return await _raw(await until_disconnect(request.receive, call), request)


async def batch_item(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``GET``/``DELETE /v1/messages/batches/{id}`` and ``POST .../{id}/cancel``."""
    batches = gateway.thrift.batches
    batch_id: str = request.path_params["batch_id"]
    options = _options(request)
    if request.method == "DELETE":
        call: Any = batches.delete(batch_id, **options)
    elif request.url.path.endswith("/cancel"):
        call = batches.cancel(batch_id, **options)
    else:
        call = batches.retrieve(batch_id, **options)
    return _json(await until_disconnect(request.receive, call), request)


async def batch_results(request: Request, gateway: Serving, exchange: Exchange) -> Response:
    """``GET /v1/messages/batches/{id}/results``: JSON lines, written as they are read."""
    results = gateway.thrift.batches.results(request.path_params["batch_id"], **_options(request))
    first = await until_disconnect(request.receive, _first(results))
    await exchange.finish(200)
    return StreamingResponse(_lines(first, results), media_type="application/x-jsonl")


async def _first(results: AsyncIterator[Any]) -> Any:
    """The first result (the call that fetches them fails here, before any header is sent)."""
    return await anext(results, None)


async def _lines(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first.to_json(indent=None).encode() + b"\n"
    async for item in rest:
        yield item.to_json(indent=None).encode() + b"\n"
