"""refund_record_stripe_refund: Stripe's refund objects applied to our books, in any order, any number of times."""

import pytest

from payments.models import Payment
from refunds.models import Refund
from refunds.services import refund_record_stripe_refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from refunds.tests.invariants import assert_refund_invariants


def stripe_refund(payment, refund_id="re_1", amount=500, status="succeeded", **extra):
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": payment.currency,
        "payment_intent": payment.stripe_payment_intent_id,
        "status": status,
        "metadata": {},
        **extra,
    }


@pytest.mark.django_db
def test_a_refund_made_in_the_stripe_dashboard_is_recorded_with_no_creator():
    payment = PaidPaymentFactory(amount=2000)

    refund = refund_record_stripe_refund(stripe_refund=stripe_refund(payment, reason="requested_by_customer"))

    assert refund.created_by is None
    assert refund.stripe_refund_id == "re_1"
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.reason == "requested_by_customer"
    payment.refresh_from_db()
    assert payment.refunded_amount == 500
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_the_same_refund_applied_twice_is_recorded_once():
    payment = PaidPaymentFactory(amount=2000)

    refund_record_stripe_refund(stripe_refund=stripe_refund(payment))
    refund_record_stripe_refund(stripe_refund=stripe_refund(payment))

    assert Refund.objects.count() == 1
    payment.refresh_from_db()
    assert payment.refunded_amount == 500
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_our_pending_refund_is_found_by_the_id_in_its_metadata():
    refund = RefundFactory(amount=700)

    found = refund_record_stripe_refund(
        stripe_refund=stripe_refund(refund.payment, amount=700, metadata={"refund_id": str(refund.id)})
    )

    assert found.pk == refund.pk
    assert Refund.objects.count() == 1
    refund.refresh_from_db()
    assert refund.stripe_refund_id == "re_1" and refund.status == Refund.Status.SUCCEEDED
    assert refund.payment.refunded_amount == 700
    assert_refund_invariants(refund.payment)


@pytest.mark.django_db
def test_partial_refunds_that_add_up_to_the_charge_leave_it_refunded():
    payment = PaidPaymentFactory(amount=1500)

    for n in range(3):
        refund_record_stripe_refund(stripe_refund=stripe_refund(payment, refund_id=f"re_{n}", amount=500))

    payment.refresh_from_db()
    assert payment.refunded_amount == 1500
    assert payment.status == Payment.Status.REFUNDED
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_a_refund_that_fails_later_gives_its_amount_back():
    payment = PaidPaymentFactory(amount=2000)
    refund_record_stripe_refund(stripe_refund=stripe_refund(payment))

    refund_record_stripe_refund(
        stripe_refund=stripe_refund(payment, status="failed", failure_reason="expired_or_canceled_card")
    )

    refund = Refund.objects.get()
    assert refund.status == Refund.Status.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    payment.refresh_from_db()
    assert payment.refunded_amount == 0
    assert payment.status == Payment.Status.SUCCEEDED
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_older_news_never_moves_a_refund_back():
    payment = PaidPaymentFactory(amount=2000)
    refund_record_stripe_refund(stripe_refund=stripe_refund(payment, status="failed"))

    refund_record_stripe_refund(stripe_refund=stripe_refund(payment, status="succeeded"))
    refund_record_stripe_refund(stripe_refund=stripe_refund(payment, status="pending"))

    assert Refund.objects.get().status == Refund.Status.FAILED
    payment.refresh_from_db()
    assert payment.refunded_amount == 0
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_a_refund_of_an_unknown_payment_is_not_recorded():
    payment = PaidPaymentFactory.build(stripe_payment_intent_id="pi_unknown")

    assert refund_record_stripe_refund(stripe_refund=stripe_refund(payment)) is None
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_an_expanded_payment_intent_is_read_as_its_id():
    payment = PaidPaymentFactory(amount=2000)

    refund = refund_record_stripe_refund(
        stripe_refund=stripe_refund(payment, payment_intent={"id": payment.stripe_payment_intent_id})
    )

    assert refund.payment == payment
    assert_refund_invariants(payment)
