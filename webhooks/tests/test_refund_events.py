"""Refund events: dashboard refunds are recorded with no creator, failed refunds give their amount back."""

import time

import pytest

from payments.models import Payment
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import charge_object, post_event, refund_object, stripe_event


@pytest.fixture
def payment(db):
    return PaidPaymentFactory(amount=2000)


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated", "charge.refund.updated"])
def test_a_refund_made_in_the_stripe_dashboard_becomes_a_refund_with_no_creator(client, payment, event_type):
    stripe_refund = refund_object(intent_id=payment.stripe_payment_intent_id, amount=600)

    response = post_event(client, stripe_event(event_type, stripe_refund))

    assert response.status_code == 200
    refund = Refund.objects.get()
    assert refund.created_by is None
    assert refund.stripe_refund_id == stripe_refund["id"]
    assert (refund.amount, refund.status) == (600, Refund.Status.SUCCEEDED)
    payment.refresh_from_db()
    assert payment.refunded_amount == 600
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert WebhookEvent.objects.get().payment == payment


@pytest.mark.django_db
def test_refund_updated_completes_our_pending_refund_found_by_its_metadata(client, staff):
    refund = RefundFactory(amount=2000, created_by=staff, payment__amount=2000)
    stripe_refund = refund_object(
        intent_id=refund.payment.stripe_payment_intent_id, amount=2000, metadata={"refund_id": str(refund.id)}
    )

    post_event(client, stripe_event("refund.updated", stripe_refund))

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.stripe_refund_id == stripe_refund["id"]
    assert refund.created_by == staff
    assert Refund.objects.count() == 1
    refund.payment.refresh_from_db()
    assert refund.payment.status == Payment.Status.REFUNDED


@pytest.mark.django_db
def test_refund_failed_gives_the_amount_back_to_the_payment(client, payment):
    now = int(time.time())
    stripe_refund = refund_object(intent_id=payment.stripe_payment_intent_id, amount=2000, created=now)
    post_event(client, stripe_event("refund.created", stripe_refund, created=now))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED

    failed = {**stripe_refund, "status": "failed", "failure_reason": "expired_or_canceled_card"}
    assert post_event(client, stripe_event("refund.failed", failed, created=now + 5)).status_code == 200

    refund = Refund.objects.get()
    assert refund.status == Refund.Status.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    payment.refresh_from_db()
    assert payment.refunded_amount == 0
    assert payment.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_late_refund_created_does_not_revive_a_failed_refund(client, payment):
    stripe_refund = refund_object(intent_id=payment.stripe_payment_intent_id, amount=700, status="failed")
    post_event(client, stripe_event("refund.failed", stripe_refund))

    post_event(client, stripe_event("refund.created", {**stripe_refund, "status": "pending"}))
    post_event(client, stripe_event("refund.updated", {**stripe_refund, "status": "succeeded"}))

    assert Refund.objects.get().status == Refund.Status.FAILED
    payment.refresh_from_db()
    assert payment.refunded_amount == 0


@pytest.mark.django_db
def test_charge_refunded_of_the_current_api_names_no_refund_but_proves_the_payment_succeeded(client, db):
    """A current charge no longer embeds its refunds: the refund.* events bring them."""
    payment = PaidPaymentFactory(amount=2000, status=Payment.Status.PROCESSING)
    charge = charge_object(intent_id=payment.stripe_payment_intent_id, amount=2000, amount_refunded=2000)
    assert "refunds" not in charge

    response = post_event(client, stripe_event("charge.refunded", charge))

    assert response.status_code == 200
    assert Refund.objects.count() == 0
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.refunded_amount == 0
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PROCESSED


@pytest.mark.django_db
def test_charge_refunded_of_an_older_api_records_its_embedded_refunds(client, payment):
    first = refund_object(intent_id=None, amount=500)
    second = refund_object(intent_id=None, amount=700)
    charge = charge_object(
        intent_id=payment.stripe_payment_intent_id, amount=2000, amount_refunded=1200, refunds=[first, second]
    )

    post_event(client, stripe_event("charge.refunded", charge, api_version="2019-12-03"))
    post_event(client, stripe_event("refund.created", {**first, "payment_intent": payment.stripe_payment_intent_id}))

    assert sorted(Refund.objects.values_list("amount", flat=True)) == [500, 700]
    payment.refresh_from_db()
    assert payment.refunded_amount == 1200


@pytest.mark.django_db
def test_charge_refunded_of_an_unknown_payment_with_nothing_to_record_is_ignored(client):
    charge = charge_object(intent_id="pi_unknown_here", amount_refunded=2000)

    assert post_event(client, stripe_event("charge.refunded", charge)).status_code == 200

    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.IGNORED
    assert Payment.objects.count() == 0
