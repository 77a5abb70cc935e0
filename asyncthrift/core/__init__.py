"""The bottom layer: what every other layer may use and which uses none of them.

The SDK's internals (`_sdk`), prices, token estimates, the `Stats` record, HTTP status
meanings and the circuit breaker. It imports nothing of the package but `errors`.
"""
