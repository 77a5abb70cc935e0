"""Embedding a `Thrift` client in web frameworks.

`asyncthrift.integrations.fastapi` and `asyncthrift.integrations.aiohttp` each give one
shared client per application (created at startup, closed at shutdown), a way for handlers
to get it, a mapping of backpressure errors to HTTP responses, and an SSE helper that relays
a stream to the browser in the API's own event format. The framework-neutral parts (the
error mapping and the SSE encoding) live in `asyncthrift.integrations.common`, so both
frameworks answer the same error with the same status, headers and body.
"""
