"""
Idempotency: what makes a retried request the same request.

Shared by payments and refunds. Our clients send an `Idempotency-Key`; the
first request under a key stores a fingerprint of its body, so a replay (same
key, same body) is told from a mistake (same key, another body). Every Stripe
write carries a Stripe idempotency key derived from our row's id, and the
Stripe object carries our ids in its metadata, under the names below, so that
an answer lost on the way back can still be found at Stripe.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

# Our Payment.id travels to Stripe (PaymentIntent, SetupIntent, Refund metadata) under this key.
PAYMENT_ID_METADATA_KEY = "payment_id"
# Our Refund.id travels to Stripe (Refund metadata) under this key.
REFUND_ID_METADATA_KEY = "refund_id"
# Stripe keeps idempotency keys for 24 hours; an hour's margin for slow calls and clocks.
# Past it, resending a key may make a second object: look for the first by our id in its metadata.
STRIPE_IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=23)


def request_fingerprint(data: dict[str, Any]) -> str:
    """
    A stable digest (64 hex characters, sha256) of a validated request body, a
    dict of JSON-serialisable values: equal for equal bodies whatever the key
    order, so a replay is told from a new request under the same key.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
