"""Ways to pay less, each a stage around the pipeline's attempt: packing, adaptive
concurrency, compression, prompt caching, few-shot examples, batches. They use the
`pipeline`; the client builds and owns them.
"""
