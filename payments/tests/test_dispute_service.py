"""dispute_record_stripe_dispute: a Stripe Dispute object recorded once on its payment; a closed one stays closed."""

import typing
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from payments.disputes import dispute_record_stripe_dispute
from payments.models import Dispute
from payments.tests.factories import PaymentFactory
from webhooks.tests.factories import dispute_object

AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def payment(db):
    return PaymentFactory(amount=2000, status="succeeded")


@pytest.mark.django_db
def test_a_new_dispute_is_recorded_on_its_payment(payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id, amount=1500)

    dispute = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT)

    assert dispute == Dispute.objects.get()
    assert dispute.payment == payment
    assert (dispute.stripe_dispute_id, dispute.amount) == (stripe_dispute["id"], 1500)
    assert (dispute.status, dispute.reason) == (Dispute.Status.NEEDS_RESPONSE, "fraudulent")
    # Opened when Stripe says (its own `created`: Stripe's clock), not when we heard of it.
    assert dispute.created_at == datetime.fromtimestamp(stripe_dispute["created"], tz=UTC)
    assert dispute.evidence_due_by == datetime.fromtimestamp(stripe_dispute["evidence_details"]["due_by"], tz=UTC)
    assert dispute.is_open


@pytest.mark.django_db
def test_an_expanded_payment_intent_names_the_payment_too(payment):
    stripe_dispute = dispute_object(intent_id=None)
    stripe_dispute["payment_intent"] = {"id": payment.stripe_payment_intent_id, "object": "payment_intent"}

    dispute = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT)

    assert dispute is not None
    assert dispute.payment == payment


@pytest.mark.django_db
def test_the_same_dispute_twice_is_one_dispute(payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)

    first = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT)
    second = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT)

    assert first.pk == second.pk
    assert Dispute.objects.count() == 1


@pytest.mark.django_db
def test_newer_news_moves_an_open_dispute_and_older_news_does_not(payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)
    dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT)

    dispute_record_stripe_dispute(stripe_dispute={**stripe_dispute, "status": "under_review"}, at=AT + timedelta(1))
    dispute_record_stripe_dispute(stripe_dispute={**stripe_dispute, "status": "needs_response"}, at=AT)

    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW


@pytest.mark.django_db
def test_a_closed_dispute_is_never_reopened(payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)
    dispute_record_stripe_dispute(stripe_dispute={**stripe_dispute, "status": "lost"}, at=AT)

    later = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT + timedelta(days=1))

    assert later.status == Dispute.Status.LOST
    assert Dispute.objects.get().is_closed


@pytest.mark.django_db
def test_a_dispute_of_an_unknown_payment_records_nothing(db):
    answer = dispute_record_stripe_dispute(stripe_dispute=dispute_object(intent_id="pi_unknown"), at=AT)

    assert answer is None
    assert Dispute.objects.count() == 0


@pytest.mark.django_db
def test_a_dispute_without_payment_intent_records_nothing(payment):
    answer = dispute_record_stripe_dispute(stripe_dispute=dispute_object(intent_id=None), at=AT)

    assert answer is None
    assert Dispute.objects.count() == 0


def test_dispute_statuses_are_stripes():
    """Every Dispute.Status is a status Stripe's own SDK lists, and every one Stripe lists is open or closed."""
    status_type = stripe.Dispute.__annotations__["status"]
    stripe_statuses = {
        value for arg in typing.get_args(status_type) for value in typing.get_args(arg) if isinstance(value, str)
    }

    assert set(Dispute.Status.values) == stripe_statuses
    assert Dispute.OPEN_STATUSES | Dispute.CLOSED_STATUSES == set(Dispute.Status.values)
    assert not Dispute.OPEN_STATUSES & Dispute.CLOSED_STATUSES
    assert set(Dispute.PROGRESS) == Dispute.OPEN_STATUSES


@pytest.mark.django_db
def test_a_dispute_without_its_own_created_is_dated_by_the_news(payment):
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id)
    del stripe_dispute["created"]

    assert dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=AT).created_at == AT
