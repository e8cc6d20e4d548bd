"""The local Stripe's own signed webhooks reach /webhooks/stripe/ and bring a payment to its outcome."""

import time

import pytest

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import confirm_at_stripe, create_payment
from webhooks.models import WebhookEvent

WAIT_SECONDS = 15


def wait_for_status(payment, status):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        payment.refresh_from_db()
        if payment.status == status:
            return payment
        time.sleep(0.1)
    return payment


@pytest.mark.django_db(transaction=True)
def test_a_payment_confirmed_at_stripe_succeeds_here_through_stripes_webhook(stripe_webhooks, owner_api):
    payment = create_payment(owner_api, "real-webhook-ok", amount=1800)

    confirm_at_stripe(payment, "pm_card_visa")

    assert wait_for_status(payment, Payment.Status.SUCCEEDED).status == Payment.Status.SUCCEEDED
    event = WebhookEvent.objects.get(type="payment_intent.succeeded")
    assert event.outcome == WebhookEvent.Outcome.PROCESSED
    assert event.payment == payment
    assert event.object_id == payment.stripe_payment_intent_id


@pytest.mark.django_db(transaction=True)
def test_a_declined_card_leaves_the_payment_failed_through_stripes_webhook(stripe_webhooks, owner_api):
    payment = create_payment(owner_api, "real-webhook-declined", amount=1800)
    declining_card = stripe_gateway.get_client().v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4000000000000341", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )

    confirm_at_stripe(payment, declining_card.id)

    assert wait_for_status(payment, Payment.Status.FAILED).status == Payment.Status.FAILED
    assert payment.failure_code == "card_declined"
    event = WebhookEvent.objects.get(type="payment_intent.payment_failed")
    assert event.outcome == WebhookEvent.Outcome.PROCESSED
