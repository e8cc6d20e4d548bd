"""
The outbox: every change a storefront cares about writes one event in the same
transaction, with the payment as the API answers it; news that changes nothing
writes none, and a change rolled back leaves nothing behind.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from procrastinate.contrib.django import app

from devkit.workers import run_jobs_in_process
from notifications.models import Delivery, Event, EventType
from notifications.tests.factories import EndpointFactory, queued_jobs
from payments.api import PaymentSerializer
from payments.disputes import dispute_record_stripe_dispute
from payments.models import Payment
from payments.services import payment_record_stripe_intent
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.models import Refund
from refunds.services import refund_record_stripe_refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.tests.factories import (
    card_declined_error,
    dispute_object,
    payment_intent_event,
    payment_intent_object,
    post_event,
    refund_object,
)

AT = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def types_of(payment) -> list[str]:
    return list(Event.objects.filter(payment=payment).order_by("sequence").values_list("type", flat=True))


def record_intent(payment, status: str, *, at=AT, **intent):
    return payment_record_stripe_intent(
        intent=payment_intent_object(payment=payment, status=status, **intent),
        at=at,
        payment_failed=bool(intent.get("last_payment_error")),
    )


@pytest.fixture
def payment(owner):
    return PaymentFactory(user=owner, amount=2000)


@pytest.mark.django_db
def test_a_payment_that_succeeds_writes_payment_succeeded_with_the_payment_as_the_api_answers_it(payment):
    record_intent(payment, "succeeded")

    event = Event.objects.get()
    payment.refresh_from_db()
    assert event.type == EventType.PAYMENT_SUCCEEDED
    assert event.payment == payment
    assert event.user == payment.user
    assert event.payload == {"payment": PaymentSerializer(payment).data | {"id": str(payment.id)}}
    assert event.payload["payment"]["status"] == "succeeded"
    assert event.public_id.startswith("ntf_")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "extra", "expected"),
    [
        ("requires_payment_method", {"last_payment_error": card_declined_error()}, EventType.PAYMENT_FAILED),
        ("canceled", {}, EventType.PAYMENT_CANCELED),
        ("requires_capture", {}, EventType.PAYMENT_REQUIRES_CAPTURE),
    ],
)
def test_each_outcome_writes_its_event(payment, status, extra, expected):
    record_intent(payment, status, **extra)

    assert types_of(payment) == [expected]


@pytest.mark.django_db
def test_an_authorized_payment_that_is_captured_writes_payment_captured_not_succeeded(payment):
    record_intent(payment, "requires_capture", at=AT)
    record_intent(payment, "succeeded", at=AT + timedelta(seconds=5))

    assert types_of(payment) == [EventType.PAYMENT_REQUIRES_CAPTURE, EventType.PAYMENT_CAPTURED]


@pytest.mark.django_db
def test_steps_that_are_not_outcomes_write_nothing(payment):
    for second, status in enumerate(["requires_action", "processing"]):
        record_intent(payment, status, at=AT + timedelta(seconds=second))

    assert types_of(payment) == []


@pytest.mark.django_db
def test_the_same_news_twice_and_older_news_write_nothing_more(payment):
    record_intent(payment, "succeeded", at=AT)
    record_intent(payment, "succeeded", at=AT)
    record_intent(payment, "processing", at=AT - timedelta(minutes=1))

    assert types_of(payment) == [EventType.PAYMENT_SUCCEEDED]


@pytest.mark.django_db
def test_a_second_declined_attempt_is_news_but_the_same_decline_told_twice_is_not(payment):
    declined = card_declined_error()
    record_intent(payment, "requires_payment_method", at=AT, last_payment_error=declined)
    record_intent(payment, "requires_payment_method", at=AT + timedelta(seconds=1), last_payment_error=declined)
    other = {**declined, "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}
    record_intent(payment, "requires_payment_method", at=AT + timedelta(seconds=2), last_payment_error=other)

    assert types_of(payment) == [EventType.PAYMENT_FAILED, EventType.PAYMENT_FAILED]


@pytest.mark.django_db
def test_a_partial_refund_writes_payment_refunded_with_the_refund_and_the_payment_after_it(owner):
    payment = PaidPaymentFactory(user=owner, amount=2000)
    refund = RefundFactory(payment=payment, amount=500)
    Event.objects.all().delete()

    refund_record_stripe_refund(
        stripe_refund=refund_object(
            intent_id=payment.stripe_payment_intent_id, amount=500, metadata={"refund_id": str(refund.id)}
        )
    )

    event = Event.objects.get()
    assert event.type == EventType.PAYMENT_REFUNDED
    assert event.payload["refund"]["id"] == str(refund.id)
    assert event.payload["refund"]["status"] == "succeeded"
    assert (event.payload["payment"]["status"], event.payload["payment"]["refunded_amount"]) == (
        "partially_refunded",
        500,
    )
    # Staff's words stay with staff.
    assert "note" not in event.payload["refund"] and "created_by" not in event.payload["refund"]


@pytest.mark.django_db
def test_a_refund_that_fails_after_succeeding_tells_the_payment_as_the_transaction_leaves_it(owner):
    payment = PaidPaymentFactory(user=owner, amount=2000)
    stripe_refund = refund_object(intent_id=payment.stripe_payment_intent_id, amount=500)
    refund_record_stripe_refund(stripe_refund=stripe_refund)

    refund_record_stripe_refund(
        stripe_refund={**stripe_refund, "status": "failed", "failure_reason": "lost_or_stolen_card"}
    )

    failed = Event.objects.get(type=EventType.REFUND_FAILED)
    assert failed.payload["refund"]["status"] == "failed"
    assert failed.payload["refund"]["failure_reason"] == "lost_or_stolen_card"
    # The refund was saved before its payment gave the amount back: the event was brought up to date.
    assert (failed.payload["payment"]["refunded_amount"], failed.payload["payment"]["status"]) == (0, "succeeded")
    assert types_of(payment) == [EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_REFUNDED, EventType.REFUND_FAILED]


@pytest.mark.django_db
def test_a_dispute_writes_created_then_closed_once(owner):
    payment = PaidPaymentFactory(user=owner, amount=2000)
    intent_id = payment.stripe_payment_intent_id
    dispute = dispute_object(intent_id=intent_id, status="needs_response")

    dispute_record_stripe_dispute(stripe_dispute=dispute, at=AT)
    dispute_record_stripe_dispute(stripe_dispute={**dispute, "status": "under_review"}, at=AT + timedelta(seconds=1))
    dispute_record_stripe_dispute(stripe_dispute={**dispute, "status": "won"}, at=AT + timedelta(seconds=2))
    dispute_record_stripe_dispute(stripe_dispute={**dispute, "status": "won"}, at=AT + timedelta(seconds=3))

    assert types_of(payment) == [EventType.PAYMENT_SUCCEEDED, EventType.DISPUTE_CREATED, EventType.DISPUTE_CLOSED]
    closed = Event.objects.get(type=EventType.DISPUTE_CLOSED)
    assert closed.payload["dispute"]["id"] == dispute["id"]
    assert closed.payload["dispute"]["status"] == "won"
    assert closed.payload["payment"]["id"] == str(payment.id)


@pytest.mark.django_db
def test_sequence_grows_with_every_event():
    for _ in range(3):
        PaidPaymentFactory()

    sequences = list(Event.objects.order_by("created_at", "sequence").values_list("sequence", flat=True))
    assert sequences == sorted(sequences) and len(set(sequences)) == 3


@pytest.mark.django_db
def test_a_change_rolled_back_leaves_no_event_no_delivery_and_no_job(payment):
    EndpointFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        record_intent(payment, "succeeded")
        assert Event.objects.count() == 1 and Delivery.objects.count() == 1
        raise RuntimeError("something after the change failed")

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert (Event.objects.count(), Delivery.objects.count(), queued_jobs()) == (0, 0, [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_jobs_left")
def test_in_a_worker_the_delivery_job_commits_with_its_delivery_or_not_at_all(payment):
    """
    A worker's procrastinate app defers on a connection pool of its own (as
    `manage.py procrastinate worker` sets it up): the delivery's job must still be
    written in the transaction that writes the delivery, or a worker takes the job
    before the delivery exists ("no such delivery") and a rollback leaves it behind.
    """
    EndpointFactory()

    with app.replace_connector(app.connector.get_worker_connector()), app.open():
        with pytest.raises(RuntimeError), transaction.atomic():
            record_intent(payment, "succeeded")
            raise RuntimeError("something after the change failed")
        assert (Delivery.objects.count(), queued_jobs()) == (0, [])

        with transaction.atomic():
            record_intent(payment, "succeeded")
            delivery = Delivery.objects.get()
        assert [job["args"]["delivery_id"] for job in queued_jobs()] == [delivery.pk]


@pytest.mark.django_db
def test_the_same_stripe_event_delivered_three_times_writes_one_event_and_one_delivery(client, payment):
    EndpointFactory(owner=payment.user)
    event = payment_intent_event("payment_intent.succeeded", payment)

    for _ in range(3):
        assert post_event(client, event).status_code == 200
        # With the background engine, the stored event is applied by a job: run it (and nothing else is due).
        run_jobs_in_process()

    assert types_of(payment) == [EventType.PAYMENT_SUCCEEDED]
    assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_deliveries_go_to_the_owners_endpoints_and_the_operators_wanting_the_type(owner, outsider, payment):
    own = EndpointFactory(owner=owner)
    operator = EndpointFactory(owner=None)
    EndpointFactory(owner=outsider)
    EndpointFactory(owner=owner, event_types=[EventType.PAYMENT_REFUNDED])
    EndpointFactory(owner=owner, enabled=False)

    record_intent(payment, "succeeded")

    assert {d.endpoint for d in Delivery.objects.all()} == {own, operator}
    jobs = queued_jobs()
    assert sorted(job["args"]["delivery_id"] for job in jobs) == sorted(d.pk for d in Delivery.objects.all())


@pytest.mark.django_db
def test_a_payment_first_seen_through_stripe_is_heard_of_by_operators_only(owner):
    EndpointFactory(owner=owner)
    operator = EndpointFactory(owner=None)

    payment = payment_record_stripe_intent(intent=payment_intent_object(status="succeeded", amount=900), at=AT)

    assert payment.user is None
    event = Event.objects.get()
    assert event.user is None
    assert [d.endpoint for d in Delivery.objects.all()] == [operator]


@pytest.mark.django_db
def test_a_refund_made_failed_at_once_writes_refund_failed():
    other = UserFactory()
    refund = RefundFactory(payment__user=other, status=Refund.Status.PENDING)

    refund.apply_stripe_status(Refund.Status.FAILED, failure_reason="expired_or_canceled_card")
    with transaction.atomic():
        refund.save()

    assert list(Event.objects.filter(type=EventType.REFUND_FAILED).values_list("user", flat=True)) == [other.pk]
