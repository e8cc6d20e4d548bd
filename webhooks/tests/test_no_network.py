"""Applying webhooks never calls Stripe: Stripe is waiting for our answer, and the event carries what we need."""

import time

import pytest

from payments.models import Payment
from refunds.tests.factories import PaidPaymentFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import (
    charge_object,
    dispute_object,
    payment_intent_event,
    post_event,
    refund_object,
    stripe_event,
)


@pytest.mark.django_db
def test_no_event_type_makes_a_call_to_stripe(client, fake_stripe):
    # Any call to the local Stripe's API would hit this rule (and fail the handler).
    fake_stripe.add_fault("error500")
    now = int(time.time())
    ours = PaidPaymentFactory(amount=3000, status=Payment.Status.REQUIRES_PAYMENT_METHOD)
    intent_id = ours.stripe_payment_intent_id
    refund = refund_object(intent_id=intent_id, amount=1000, status="pending")
    events = [
        *(
            payment_intent_event(event_type, ours, created=now + offset)
            for offset, event_type in enumerate(
                [
                    "payment_intent.created",
                    "payment_intent.requires_action",
                    "payment_intent.payment_failed",
                    "payment_intent.processing",
                    "payment_intent.amount_capturable_updated",
                    "payment_intent.succeeded",
                ]
            )
        ),
        payment_intent_event("payment_intent.canceled", intent_id="pi_adopted_canceled"),
        stripe_event("refund.created", refund),
        stripe_event("refund.updated", {**refund, "status": "succeeded"}),
        stripe_event("charge.refund.updated", {**refund, "status": "failed"}),
        stripe_event("refund.failed", {**refund, "status": "failed"}),
        stripe_event("charge.refunded", charge_object(intent_id=intent_id, amount=3000, amount_refunded=1000)),
        stripe_event("charge.dispute.created", dispute_object(intent_id=intent_id)),
        stripe_event("charge.dispute.closed", {**dispute_object(intent_id=intent_id), "status": "won"}),
    ]

    statuses = [post_event(client, event).status_code for event in events]

    assert statuses == [200] * len(events)
    assert WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.PROCESSED).count() == len(events)
    assert [rule["fired"] for rule in fake_stripe.faults()] == [0]
    ours.refresh_from_db()
    assert ours.status == Payment.Status.SUCCEEDED
