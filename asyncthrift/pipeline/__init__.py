"""The request path's stages: one attempt and its route (`_attempt`, `_routes`), retries and
failures, model classes and keys, the answer lookup (cache, in-flight twins), observers'
dispatch, the stream ledger. It uses `scheduling` and `stores`; the savings that wrap it
and the client that assembles it sit above.
"""
