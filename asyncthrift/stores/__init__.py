"""What outlives one request or one process: the answer cache, budgets shared over Redis,
spend ledgers. Above `scheduling` (a shared budget is a `LocalBudget` kept in step), below
the request path that reads and writes them.
"""
