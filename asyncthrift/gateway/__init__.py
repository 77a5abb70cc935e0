"""``asyncthrift serve``: the Messages API in front of one `Thrift` client, so any client
(any language, curl, an agent) gets the scheduler, shared budgets, cache and packing by
changing its base URL. Over budget a request waits in its lane instead of getting a 429."""
