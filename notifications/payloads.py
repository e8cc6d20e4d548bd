"""
What a storefront is told: the payment as the API answers it (payments.api's
serializer, so a notification and `GET /api/payments/{id}/` agree field for
field), the refund or dispute concerned, and the envelope around them.

    {"id": "ntf_…", "type": "payment.refunded", "sequence": 42,
     "timestamp": "…", "updated_at": "…",
     "data": {"payment": {…}, "refund": {…}}}

The same envelope is the body of every delivery attempt and an item of the
feed (GET /api/events/). Amounts are integers in the currency's minor unit.
"""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from rest_framework import serializers

from payments.api import PaymentSerializer
from payments.models import Dispute, Payment
from refunds.models import Refund


class RefundNoticeSerializer(serializers.ModelSerializer):
    """A refund as its payment's owner may see it: no internal note, no staff name."""

    class Meta:
        model = Refund
        fields = ["id", "payment", "stripe_refund_id", "amount", "status", "reason", "failure_reason", "created_at"]
        read_only_fields = fields


class DisputeNoticeSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="stripe_dispute_id", read_only=True)
    currency = serializers.CharField(source="payment.currency", read_only=True)

    class Meta:
        model = Dispute
        fields = ["id", "payment", "amount", "currency", "status", "reason", "evidence_due_by", "created_at"]
        read_only_fields = fields


def _plain(data) -> dict:
    # Serializer output may hold UUIDs and Decimals: stored as JSON, they must be plain.
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def payment_data(payment: Payment) -> dict:
    return _plain(PaymentSerializer(payment).data)


def refund_data(refund: Refund) -> dict:
    return _plain(RefundNoticeSerializer(refund).data)


def dispute_data(dispute: Dispute) -> dict:
    return _plain(DisputeNoticeSerializer(dispute).data)


def event_data(*, payment: Payment | None, refund: Refund | None = None, dispute: Dispute | None = None) -> dict:
    """An event's `data`: the payment, and the refund or the dispute concerned when there is one."""
    data = {"payment": payment_data(payment) if payment is not None else None}
    if refund is not None:
        data["refund"] = refund_data(refund)
    if dispute is not None:
        data["dispute"] = dispute_data(dispute)
    return data


def event_body(event) -> dict:
    """
    The envelope of `event` (a notifications.Event): the same dict for every
    attempt and in the feed. `updated_at` is the payment's, so a consumer can
    tell older news from newer; `sequence` orders every event of the site.
    """
    payment = event.payload.get("payment") or {}
    timestamp = serializers.DateTimeField().to_representation(event.created_at)
    return {
        "id": event.public_id,
        "type": event.type,
        "sequence": event.sequence,
        "timestamp": timestamp,
        "updated_at": payment.get("updated_at") or timestamp,
        "data": event.payload,
    }


def event_body_bytes(event) -> bytes:
    """The body a delivery sends: `event_body` as compact JSON, the same bytes on every attempt."""
    return json.dumps(event_body(event), separators=(",", ":"), sort_keys=True).encode("utf-8")
