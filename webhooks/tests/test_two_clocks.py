"""
Ordering uses Stripe's clock only (issue 16, fault 1). Our clock is set 30 s
ahead of, or behind, Stripe's (the `skewed_clock` fixture, webhooks/tests/conftest.py), and every piece of news
still lands where Stripe's own order puts it: our API answers and reconcile
reads are dated by the `Date` of Stripe's answer, events by their `created`,
and news of the same second ranks by Stripe's lifecycle.
"""

import itertools
import time
from datetime import UTC, datetime

import pytest

import core.stripe_gateway as stripe_gateway
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory, confirm_at_stripe, create_payment
from refunds.models import Refund
from refunds.tests.factories import request_refund
from storefront.tests.test_checkout import DECLINED, THREE_D_SECURE, card_payment_method, confirm
from webhooks.reconcile import payment_reconcile
from webhooks.tests.factories import (
    dispute_object,
    payment_intent_event,
    post_event,
    refund_object,
    stripe_event,
)


def stripe_created(payment: Payment) -> int:
    """The PaymentIntent's `created` as the local Stripe holds it (Stripe's clock)."""
    return stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["created"]


# --- PaymentIntents: our answers against Stripe's events ------------------------


@pytest.mark.django_db
def test_a_decline_just_after_our_create_answer_is_applied(skewed_clock, owner_api, fake_stripe, client):
    """The shopper's card is declined the moment after we created the PaymentIntent: the payment is failed."""
    payment = create_payment(owner_api, "two-clocks-decline")

    post_event(client, payment_intent_event("payment_intent.payment_failed", payment, created=int(time.time())))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_code == "generic_decline"


@pytest.mark.django_db
def test_a_late_created_event_does_not_undo_a_newer_requires_action(skewed_clock, owner_api, fake_stripe, client):
    """`payment_intent.created` arriving after our confirm answered `requires_action` is older news: dropped."""
    payment = create_payment(owner_api, "two-clocks-3ds")
    card = card_payment_method(owner_api, payment, fake_stripe, THREE_D_SECURE)
    assert confirm(owner_api, payment, card).json()["status"] == "requires_action"

    post_event(client, payment_intent_event("payment_intent.created", payment, created=stripe_created(payment)))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_ACTION


@pytest.mark.django_db
def test_a_late_requires_action_does_not_undo_a_decline_our_confirm_answered(
    skewed_clock, owner_api, fake_stripe, client
):
    """Our confirm was answered with a decline; Stripe's earlier `requires_action` arriving after it is dropped."""
    payment = create_payment(owner_api, "two-clocks-declined")
    card = card_payment_method(owner_api, payment, fake_stripe, DECLINED)
    assert confirm(owner_api, payment, card).json()["status"] == "failed"

    post_event(client, payment_intent_event("payment_intent.requires_action", payment, created=stripe_created(payment)))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED


@pytest.mark.django_db
@pytest.mark.parametrize("newer", [False, True], ids=["older news", "newer news"])
def test_reconcile_dates_what_it_reads_by_stripes_answer(skewed_clock, owner_api, fake_stripe, client, newer):
    """
    Reconcile reads the declined PaymentIntent: an event from before that read
    does not undo it, one from after it (the shopper tries again) applies.
    """
    payment = create_payment(owner_api, "two-clocks-reconcile")
    card = card_payment_method(owner_api, payment, fake_stripe, DECLINED)
    assert confirm_at_stripe(payment, card) is None
    before_read = int(time.time())
    assert payment_reconcile(payment=payment).changed
    after_read = int(time.time())
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED

    created = after_read + 1 if newer else before_read - 1
    post_event(client, payment_intent_event("payment_intent.processing", payment, created=created))

    payment.refresh_from_db()
    assert payment.status == (Payment.Status.PROCESSING if newer else Payment.Status.FAILED)


# --- The same second: Stripe's lifecycle decides ----------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "order",
    list(
        itertools.permutations(
            ["payment_intent.requires_action", "payment_intent.processing", "payment_intent.payment_failed"]
        )
    ),
)
def test_in_one_second_a_decline_ranks_after_requires_action_and_processing(client, order):
    """A challenge, its processing and the decline it ends in, all in one second, in any order: failed."""
    payment = PaymentFactory()
    second = int(time.time())

    for event_type in order:
        post_event(client, payment_intent_event(event_type, payment, created=second))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED


@pytest.mark.django_db
@pytest.mark.parametrize(
    "order",
    list(
        itertools.permutations(
            ["payment_intent.created", "payment_intent.payment_failed", "payment_intent.amount_capturable_updated"]
        )
    ),
)
def test_in_one_second_the_lifecycle_orders_creation_decline_and_authorization(client, order):
    """Created, declined, then authorized with another card, in one second and any order: requires_capture."""
    payment = PaymentFactory()
    second = int(time.time())

    for event_type in order:
        post_event(client, payment_intent_event(event_type, payment, created=second))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE


# --- Refunds and disputes ------------------------------------------------------------


@pytest.mark.django_db
def test_a_refund_and_its_later_failure_apply_whatever_our_clock(skewed_clock, staff_api, paid_payment, client):
    """Our refund, answered by Stripe, then Stripe's news that it failed: recorded as failed, its money back."""
    payment = paid_payment(amount=3000)
    response = request_refund(staff_api, payment, {"amount": 1000}, key="two-clocks-refund")
    assert response.status_code == 201
    refund = Refund.objects.get(pk=response.json()["id"])

    failed = refund_object(
        intent_id=payment.stripe_payment_intent_id,
        refund_id=refund.stripe_refund_id,
        amount=1000,
        status="failed",
        failure_reason="expired_or_canceled_card",
        metadata={"refund_id": str(refund.id)},
    )
    post_event(client, stripe_event("refund.failed", failed))

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert payment.refunded_amount == 0
    assert payment.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_dashboard_refund_is_dated_by_stripe(skewed_clock, client):
    """A refund made in Stripe's dashboard keeps the moment Stripe made it, not the moment we heard of it."""
    payment = PaymentFactory(status=Payment.Status.SUCCEEDED)
    made = int(time.time()) - 600
    stripe_refund = refund_object(intent_id=payment.stripe_payment_intent_id, amount=500, created=made)

    post_event(client, stripe_event("refund.created", stripe_refund))

    assert Refund.objects.get().created_at == datetime.fromtimestamp(made, tz=UTC)


@pytest.mark.django_db
def test_disputes_are_dated_and_ordered_by_stripe(skewed_clock, client):
    """
    A dispute first heard of through a later update keeps Stripe's opening
    moment, and its news applies in Stripe's order whatever our clock says.
    """
    payment = PaymentFactory(status=Payment.Status.SUCCEEDED)
    now = int(time.time())
    stripe_dispute = {**dispute_object(intent_id=payment.stripe_payment_intent_id), "created": now - 3600}

    post_event(
        client, stripe_event("charge.dispute.updated", {**stripe_dispute, "status": "under_review"}, created=now)
    )
    post_event(client, stripe_event("charge.dispute.created", stripe_dispute, created=now - 3600))

    dispute = Dispute.objects.get()
    assert dispute.created_at == datetime.fromtimestamp(now - 3600, tz=UTC)
    assert dispute.status == Dispute.Status.UNDER_REVIEW
