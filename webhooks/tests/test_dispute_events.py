"""charge.dispute.* events record the chargeback on its payment; a closed dispute stays closed."""

import time

import pytest

from payments.models import Dispute
from refunds.tests.factories import PaidPaymentFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import dispute_object, post_event, stripe_event


@pytest.fixture
def payment(db):
    return PaidPaymentFactory(amount=2000)


@pytest.mark.django_db
def test_dispute_created_records_the_dispute(client, payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id, amount=2000)

    assert post_event(client, stripe_event("charge.dispute.created", stripe_dispute)).status_code == 200

    dispute = Dispute.objects.get()
    assert dispute.payment == payment
    assert dispute.stripe_dispute_id == stripe_dispute["id"]
    assert (dispute.amount, dispute.status, dispute.reason) == (2000, Dispute.Status.NEEDS_RESPONSE, "fraudulent")
    assert dispute.evidence_due_by is not None
    assert dispute.is_open


@pytest.mark.django_db
def test_dispute_closed_records_the_outcome(client, payment):
    now = int(time.time())
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)
    post_event(client, stripe_event("charge.dispute.created", stripe_dispute, created=now - 60))

    post_event(client, stripe_event("charge.dispute.closed", {**stripe_dispute, "status": "lost"}, created=now))

    dispute = Dispute.objects.get()
    assert dispute.status == Dispute.Status.LOST
    assert not dispute.is_open


@pytest.mark.django_db
def test_a_late_dispute_created_does_not_reopen_a_closed_dispute(client, payment):
    now = int(time.time())
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)
    post_event(client, stripe_event("charge.dispute.closed", {**stripe_dispute, "status": "won"}, created=now))

    post_event(client, stripe_event("charge.dispute.created", stripe_dispute, created=now - 60))
    post_event(
        client, stripe_event("charge.dispute.updated", {**stripe_dispute, "status": "under_review"}, created=now + 1)
    )

    assert Dispute.objects.count() == 1
    assert Dispute.objects.get().status == Dispute.Status.WON


@pytest.mark.django_db
def test_a_dispute_of_a_paymentintent_stripe_does_not_have_is_ignored(client, fake_stripe):
    """Its apply job asks Stripe for the PaymentIntent to adopt it; Stripe has none: not a payment of ours."""
    response = post_event(client, stripe_event("charge.dispute.created", dispute_object(intent_id="pi_unknown")))

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.IGNORED
    assert "Stripe has no PaymentIntent pi_unknown" in stored.error
    assert Dispute.objects.count() == 0


@pytest.mark.django_db
def test_a_dispute_of_a_charge_without_payment_intent_is_ignored(client):
    response = post_event(client, stripe_event("charge.dispute.created", dispute_object(intent_id=None)))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.IGNORED
