"""Observers a user attaches: Prometheus metrics, OpenTelemetry tracing, a request log.
They see the client from outside (`Observer`); nothing below imports them.
"""
