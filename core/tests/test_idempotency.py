"""A request's fingerprint tells a replay (same body) from a new request under the same key."""

from core.idempotency import request_fingerprint


def test_the_same_body_in_another_key_order_has_the_same_fingerprint():
    first = request_fingerprint({"amount": 2000, "currency": "usd", "metadata": {"a": "1", "b": "2"}})
    again = request_fingerprint({"metadata": {"b": "2", "a": "1"}, "currency": "usd", "amount": 2000})

    assert first == again
    assert len(first) == 64


def test_another_body_has_another_fingerprint():
    base = {"amount": 2000, "currency": "usd", "description": ""}

    assert request_fingerprint(base) != request_fingerprint({**base, "amount": 2001})
    assert request_fingerprint(base) != request_fingerprint({**base, "description": None})
    assert request_fingerprint({"note": "é"}) != request_fingerprint({"note": "e"})
