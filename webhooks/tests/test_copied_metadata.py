"""
Identity never comes from copyable metadata (issue 16, fault 2). Our ids ride in
the metadata of what we create at Stripe, and anyone can copy metadata onto
another object (the dashboard's "duplicate", a script). A Stripe object whose id
differs from the one we recorded is another object, whatever its metadata says:
it never overwrites ours, and a refund is only ever recorded on the payment of
its own PaymentIntent.
"""

import pytest

from payments.models import Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory, request_refund
from webhooks.models import WebhookEvent
from webhooks.reconcile import refund_reconcile
from webhooks.tests.factories import (
    OLD_API_VERSION,
    charge_object,
    payment_intent_event,
    post_event,
    refund_object,
    stripe_event,
)

REFUND_EVENT_TYPES = ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"]


def refund_event(event_type: str, stripe_refund: dict) -> dict:
    """`event_type` about `stripe_refund`; `charge.refunded` in an older version, which embeds its refunds."""
    if event_type == "charge.refunded":
        charge = charge_object(
            intent_id=stripe_refund["payment_intent"], amount=stripe_refund["amount"], refunds=[stripe_refund]
        )
        return stripe_event(event_type, charge, api_version=OLD_API_VERSION)
    return stripe_event(event_type, stripe_refund)


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", [*REFUND_EVENT_TYPES, "charge.refunded"])
def test_a_refund_with_our_metadata_and_another_id_never_overwrites_our_succeeded_refund(
    event_type, staff_api, paid_payment, client
):
    """
    The attack run's case: our full refund succeeded; an event about another
    refund (another id) carrying our refund's id fails. Ours stays succeeded,
    the payment stays refunded, and no second full refund is accepted.
    """
    payment = paid_payment(amount=5000)
    response = request_refund(staff_api, payment, {"amount": 5000}, key="ours")
    assert response.status_code == 201
    ours = Refund.objects.get(pk=response.json()["id"])
    assert ours.status == Refund.Status.SUCCEEDED

    copied = refund_object(
        intent_id=payment.stripe_payment_intent_id,
        amount=5000,
        status="failed",
        failure_reason="unknown",
        metadata={"refund_id": str(ours.id), "payment_id": str(payment.id)},
    )
    post_event(client, refund_event(event_type, copied))

    ours.refresh_from_db()
    payment.refresh_from_db()
    assert (ours.status, ours.stripe_refund_id) != (Refund.Status.FAILED, copied["id"])
    assert ours.status == Refund.Status.SUCCEEDED
    assert payment.refunded_amount == 5000
    assert payment.status == Payment.Status.REFUNDED
    other = Refund.objects.filter(stripe_refund_id=copied["id"]).first()
    assert other is None or (other.pk != ours.pk and other.created_by is None)
    assert request_refund(staff_api, payment, {"amount": 5000}, key="second").status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", REFUND_EVENT_TYPES)
def test_our_metadata_on_a_refund_of_another_paymentintent_leaves_our_refund_alone(event_type, client, staff):
    """A refund of another PaymentIntent naming our pending refund is recorded on its own payment; ours waits."""
    ours = RefundFactory(amount=700, created_by=staff, payment__amount=2000)
    elsewhere = PaidPaymentFactory(amount=2000)
    copied = refund_object(
        intent_id=elsewhere.stripe_payment_intent_id, amount=700, metadata={"refund_id": str(ours.id)}
    )

    post_event(client, stripe_event(event_type, copied))

    ours.refresh_from_db()
    assert (ours.status, ours.stripe_refund_id) == (Refund.Status.PENDING, None)
    recorded = Refund.objects.get(stripe_refund_id=copied["id"])
    assert recorded.payment == elsewhere
    assert recorded.created_by is None
    assert ours.payment.refunds.count() == 1


@pytest.mark.django_db
def test_our_metadata_on_a_refund_of_another_amount_is_another_refund(client, staff):
    """Same PaymentIntent, our refund's id in its metadata, but not our amount: not ours, recorded beside it."""
    ours = RefundFactory(amount=700, created_by=staff, payment__amount=2000)
    copied = refund_object(
        intent_id=ours.payment.stripe_payment_intent_id, amount=300, metadata={"refund_id": str(ours.id)}
    )

    post_event(client, stripe_event("refund.created", copied))

    ours.refresh_from_db()
    assert (ours.status, ours.stripe_refund_id) == (Refund.Status.PENDING, None)
    assert Refund.objects.get(stripe_refund_id=copied["id"]).created_by is None


@pytest.mark.django_db
def test_our_own_answer_found_by_metadata_still_completes_our_refund(client, staff):
    """The one case metadata is for: Stripe's refund of our pending refund (same PaymentIntent, same amount)."""
    ours = RefundFactory(amount=700, created_by=staff, payment__amount=2000)
    answer = refund_object(
        intent_id=ours.payment.stripe_payment_intent_id, amount=700, metadata={"refund_id": str(ours.id)}
    )

    post_event(client, stripe_event("refund.updated", answer))

    ours.refresh_from_db()
    assert (ours.status, ours.stripe_refund_id) == (Refund.Status.SUCCEEDED, answer["id"])


@pytest.mark.django_db
def test_reconcile_does_not_take_a_copy_for_our_unanswered_refund(staff_api, paid_payment, fake_stripe, monkeypatch):
    """
    Reconcile looks for our unanswered refund among the PaymentIntent's refunds
    by its metadata: a refund of another amount carrying that metadata is not it.
    """
    import core.stripe_gateway as stripe_gateway

    payment = paid_payment(amount=4000)
    ours = RefundFactory(payment=payment, amount=1500)
    stripe_gateway.refund_create(
        payment_intent_id=payment.stripe_payment_intent_id,
        amount=500,
        idempotency_key="a-copy",
        metadata={"refund_id": str(ours.id)},
    )

    result = refund_reconcile(refund=ours)

    ours.refresh_from_db()
    assert (ours.status, ours.stripe_refund_id) == (Refund.Status.PENDING, None)
    assert not result.changed


@pytest.mark.django_db
def test_copied_metadata_never_moves_a_paid_payment_to_another_paymentintent(client):
    """A PaymentIntent event of another PaymentIntent naming our payment adopts that one apart; ours is untouched."""
    ours = PaymentFactory(status=Payment.Status.SUCCEEDED)
    copy = payment_intent_event("payment_intent.payment_failed", ours, intent_id="pi_copy_of_ours")

    post_event(client, copy)

    ours.refresh_from_db()
    assert ours.status == Payment.Status.SUCCEEDED
    assert ours.stripe_payment_intent_id != "pi_copy_of_ours"
    adopted = Payment.objects.get(stripe_payment_intent_id="pi_copy_of_ours")
    assert adopted.user is None
    assert adopted.status == Payment.Status.FAILED
    assert WebhookEvent.objects.get().payment == adopted


@pytest.mark.django_db
def test_copied_metadata_of_another_amount_never_binds_a_payment_still_being_created(client):
    """
    Our payment whose create answer is not back yet (no PaymentIntent here): a
    PaymentIntent of another amount naming it is not ours, and is adopted apart.
    """
    ours = PaymentFactory(stripe_payment_intent_id=None, amount=2000)
    copy = payment_intent_event("payment_intent.created", ours, intent_id="pi_other_amount", amount=9900)

    post_event(client, copy)

    ours.refresh_from_db()
    assert ours.stripe_payment_intent_id is None
    assert Payment.objects.get(stripe_payment_intent_id="pi_other_amount").user is None


@pytest.mark.django_db
def test_our_own_paymentintent_found_by_metadata_before_our_create_answer_binds(client):
    """The case metadata is for: our PaymentIntent's news before its create answer binds our payment."""
    ours = PaymentFactory(stripe_payment_intent_id=None, amount=2000)

    post_event(client, payment_intent_event("payment_intent.created", ours, intent_id="pi_ours"))

    ours.refresh_from_db()
    assert ours.stripe_payment_intent_id == "pi_ours"
