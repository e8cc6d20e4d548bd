"""
An event about a PaymentIntent no payment here records (a refund or dispute of a
payment older than our endpoint, made by another integration, or delivered
before its PaymentIntent's own events): its apply job reads the PaymentIntent
from Stripe, with no lock held, adopts it (no user) and applies the event. If
Stripe has no such PaymentIntent, the event is `ignored` with that reason. The
webhook's answer never waits on any of it.
"""

import uuid

import pytest

import core.stripe_gateway as stripe_gateway
from devkit.workers import run_jobs_in_process
from payments.models import Dispute, Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.services import apply_lock
from webhooks.tests.factories import (
    charge_object,
    dispute_object,
    payment_intent_object,
    post_event,
    refund_object,
    stripe_event,
)


def paid_elsewhere(amount: int = 5000, refunded: int = 1200) -> tuple[dict, dict]:
    """A PaymentIntent paid at the local Stripe by someone else (no payment here), and a refund of part of it."""
    intent = stripe_gateway.payment_intent_create(
        amount=amount,
        currency="usd",
        metadata={},
        idempotency_key=str(uuid.uuid4()),
        payment_method="pm_card_visa",
        confirm=True,
    )
    assert intent["status"] == "succeeded"
    refund = stripe_gateway.refund_create(
        payment_intent_id=intent["id"], amount=refunded, idempotency_key=str(uuid.uuid4()), metadata={}
    )
    return intent, refund


@pytest.mark.django_db
def test_a_refund_of_a_paymentintent_never_seen_adopts_it_from_stripe(client, fake_stripe):
    intent, refund = paid_elsewhere(amount=5000, refunded=1200)
    event = stripe_event("refund.created", refund_object(intent_id=intent["id"], refund_id=refund["id"], amount=1200))

    response = post_event(client, event, apply=False)
    assert response.status_code == 200
    assert Payment.objects.count() == 0
    run_jobs_in_process()

    payment = Payment.objects.get(stripe_payment_intent_id=intent["id"])
    assert payment.user is None
    assert (payment.amount, payment.currency) == (5000, "usd")
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert payment.refunded_amount == 1200
    recorded = Refund.objects.get()
    assert (recorded.stripe_refund_id, recorded.amount, recorded.status) == (refund["id"], 1200, "succeeded")
    assert recorded.created_by is None
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert stored.payment == payment
    assert (stored.attempts, stored.error) == (1, "")


@pytest.mark.django_db
def test_a_dispute_of_a_paymentintent_never_seen_adopts_it_from_stripe(client, fake_stripe):
    intent, _ = paid_elsewhere()

    post_event(client, stripe_event("charge.dispute.created", dispute_object(intent_id=intent["id"], amount=3800)))

    payment = Payment.objects.get(stripe_payment_intent_id=intent["id"])
    assert payment.user is None
    assert Dispute.objects.get().payment == payment
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PROCESSED


@pytest.mark.django_db
def test_a_refund_of_a_paymentintent_stripe_does_not_have_is_ignored_with_the_reason(client, fake_stripe):
    event = stripe_event("refund.created", refund_object(intent_id="pi_not_in_this_account", amount=700))

    assert post_event(client, event).status_code == 200

    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.IGNORED
    assert stored.error == (
        "Stripe has no PaymentIntent pi_not_in_this_account in this account: not a payment of this site."
    )
    assert stored.processed_at is not None
    assert Payment.objects.count() == Refund.objects.count() == 0
    # Ignored for good: nothing is left to retry.
    assert run_jobs_in_process(due_now=True).ran == []


@pytest.mark.django_db
def test_a_stripe_outage_while_adopting_is_an_attempt_retried_later(client, fake_stripe):
    intent, refund = paid_elsewhere()
    fake_stripe.add_fault("error500", path="^/v1/payment_intents/")
    event = stripe_event("refund.created", refund_object(intent_id=intent["id"], refund_id=refund["id"], amount=1200))

    post_event(client, event)

    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.PENDING
    assert stored.error.startswith("StripeServerError: reading PaymentIntent")
    assert Payment.objects.count() == 0
    fake_stripe.clear_faults()
    run_jobs_in_process(due_now=True)
    stored.refresh_from_db()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert Payment.objects.get().refunded_amount == 1200


@pytest.mark.parametrize(
    ("stripe_object", "lock"),
    [
        (payment_intent_object(intent_id="pi_a"), "pi_a"),
        (refund_object(intent_id="pi_b", refund_id="re_b"), "pi_b"),
        (charge_object(intent_id="pi_c"), "pi_c"),
        (dispute_object(intent_id="pi_d", dispute_id="dp_d"), "pi_d"),
        (
            {**dispute_object(intent_id=None, dispute_id="dp_e"), "charge": {"id": "ch_e", "payment_intent": "pi_e"}},
            "pi_e",
        ),
        ({**refund_object(intent_id={"id": "pi_f", "object": "payment_intent"}, refund_id="re_f")}, "pi_f"),
        (refund_object(intent_id=None, refund_id="re_g"), "re_g"),
        ({"id": "cus_h", "object": "customer"}, "cus_h"),
    ],
    ids=[
        "intent",
        "refund",
        "charge",
        "dispute",
        "dispute-expanded-charge",
        "refund-expanded-intent",
        "no-intent",
        "customer",
    ],
)
def test_the_apply_lock_is_the_paymentintent_the_object_is_about(stripe_object, lock):
    """Events of one payment are applied one at a time, whatever object they carry."""
    assert apply_lock(stripe_object) == lock
