"""`FewShotPool`: relevant examples first, prompt length flat as the pool grows."""

from __future__ import annotations

from asyncthrift.savings.fewshot import Example, FewShotPool


def pool_of(n: int) -> FewShotPool:
    pool = FewShotPool()
    topics = ["refund status", "parcel tracking", "password reset", "invoice copy", "address"]
    for i in range(n):
        topic = topics[i % len(topics)]
        pool.add(f"Customer {i} asks about {topic} for order {i}", f"Answer about {topic} {i}")
    return pool


def test_selects_the_most_relevant_examples() -> None:
    pool = FewShotPool(
        [
            ("How do I reset my password?", "Use the reset link."),
            ("Where is my parcel?", "Track it here."),
            Example("Can I get a refund for a broken kettle?", "Yes, within 30 days."),
        ]
    )
    assert [e.output for e in pool.select("I want a refund, the kettle is broken", k=1)] == [
        "Yes, within 30 days."
    ]
    assert pool.select("password forgotten", k=2)[0].output == "Use the reset link."
    assert pool.select("nothing in common xyz", k=2) == []


def test_prompt_length_stays_flat_as_the_pool_grows() -> None:
    lengths = []
    for n in (15, 100, 2000):
        pool = pool_of(n)
        shots = pool.select("what is the refund status of my order", k=3)
        assert len(shots) == 3 and all("refund status" in s.input for s in shots)
        lengths.append(sum(len(m["content"]) for m in pool.as_messages(shots)))
    assert max(lengths) - min(lengths) < 20  # same k examples of similar size: flat


def test_deterministic_ties() -> None:
    pool = FewShotPool([("same text", "a"), ("same text", "b")])
    assert [e.output for e in pool.select("same text", k=2)] == ["a", "b"]
