"""
Refunds through Stripe's failures (the local Stripe's fault layer): a refund is
never lost, never made twice, and `retry_refunds` finishes what was left pending.
"""

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from refunds.models import Refund
from refunds.services import refund_record_stripe_refund, refund_reserve, refund_retry, refund_submit
from refunds.tests.factories import request_refund as refund
from refunds.tests.invariants import assert_refund_invariants

REFUNDS_AT_STRIPE = "^/v1/refunds$"


def expire_lease(refund):
    """What time does to a request that died holding its refund's lease."""
    Refund.objects.filter(pk=refund.pk).update(stripe_call_started_at=timezone.now() - timedelta(minutes=5))


def retry_refunds() -> str:
    out = io.StringIO()
    call_command("retry_refunds", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_stripe_500_leaves_the_refund_pending_and_retry_refunds_completes_it_once(staff_api, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)
    fake_stripe.add_fault("error500", method="POST", path=REFUNDS_AT_STRIPE, times=1)

    response = refund(staff_api, payment, {"amount": 4000})

    assert response.status_code == 502
    assert "Retry" in response.json()["detail"]
    pending = Refund.objects.get()
    assert pending.status == Refund.Status.PENDING and pending.stripe_refund_id is None
    assert fake_stripe.list("refunds") == []
    # The pending refund holds its amount: no one can refund it twice meanwhile.
    assert refund(staff_api, payment, {"amount": 6001}, key="other").status_code == 400
    assert_refund_invariants(payment)

    output = retry_refunds()

    assert "1 recorded" in output
    pending.refresh_from_db()
    assert pending.status == Refund.Status.SUCCEEDED
    [made] = fake_stripe.list("refunds")
    assert made["id"] == pending.stripe_refund_id
    assert_refund_invariants(payment, at_stripe=fake_stripe)
    assert payment.refunded_amount == 4000

    assert "0 refund(s) awaiting Stripe" in retry_refunds()
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_answer_lost_after_stripe_refunded_is_recorded_by_retry_refunds_not_repeated(
    staff_api, paid_payment, fake_stripe
):
    payment = paid_payment(amount=10_000)
    fake_stripe.add_fault("drop", method="POST", path=REFUNDS_AT_STRIPE, times=1)

    response = refund(staff_api, payment, {"amount": 4000})

    assert response.status_code == 503
    assert len(fake_stripe.list("refunds")) == 1
    assert Refund.objects.get().stripe_refund_id is None
    assert_refund_invariants(payment)

    retry_refunds()

    [made] = fake_stripe.list("refunds")
    [ours] = Refund.objects.all()
    assert ours.stripe_refund_id == made["id"]
    assert ours.status == Refund.Status.SUCCEEDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)
    assert payment.refunded_amount == 4000


@pytest.mark.django_db
def test_answer_lost_then_the_client_retries_with_its_key_gets_the_same_refund(staff_api, paid_payment, fake_stripe):
    """The retry resends the same Stripe idempotency key, so Stripe answers with the refund it made."""
    payment = paid_payment(amount=10_000)
    fake_stripe.add_fault("drop", method="POST", path=REFUNDS_AT_STRIPE, times=1)
    assert refund(staff_api, payment, {"amount": 4000}).status_code == 503

    retried = refund(staff_api, payment, {"amount": 4000})

    assert retried.status_code == 201
    [made] = fake_stripe.list("refunds")
    assert retried.json()["stripe_refund_id"] == made["id"]
    assert Refund.objects.count() == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_process_dies_after_reserving_and_retry_refunds_finishes_the_job(staff, paid_payment, fake_stripe):
    """Reserve committed, then nothing: once its lease has expired, retry_refunds sends it, once."""
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="crashed")
    assert fake_stripe.list("refunds") == []
    assert_refund_invariants(payment)
    expire_lease(reserved)

    retry_refunds()
    retry_refunds()

    reserved.refresh_from_db()
    assert reserved.status == Refund.Status.SUCCEEDED
    [made] = fake_stripe.list("refunds")
    assert made["metadata"]["refund_id"] == str(reserved.id)
    assert_refund_invariants(payment, at_stripe=fake_stripe)
    assert payment.refunded_amount == 2500
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED


@pytest.mark.django_db
def test_a_refund_stripe_made_under_a_forgotten_key_is_found_not_repeated(staff, paid_payment, fake_stripe):
    """Stripe forgets idempotency keys after 24 hours: an older refund is first looked for by our id at Stripe."""
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="old")
    Refund.objects.filter(pk=reserved.pk).update(created_at=timezone.now() - timedelta(hours=25))
    expire_lease(reserved)
    stripe_gateway.refund_create(
        payment_intent_id=payment.stripe_payment_intent_id,
        amount=2500,
        idempotency_key="a-key-stripe-no-longer-knows",
        metadata={"refund_id": str(reserved.id), "payment_id": str(payment.id)},
    )

    retry_refunds()

    [made] = fake_stripe.list("refunds")
    reserved.refresh_from_db()
    assert reserved.stripe_refund_id == made["id"]
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_retry_refunds_keeps_a_refund_pending_while_stripe_still_fails(staff, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="k")
    expire_lease(reserved)
    fake_stripe.add_fault("error500", method="POST", path=REFUNDS_AT_STRIPE)

    with pytest.raises(CommandError, match="1 refund"):
        retry_refunds()

    reserved.refresh_from_db()
    assert reserved.status == Refund.Status.PENDING
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_a_definite_refusal_fails_the_refund_and_frees_its_amount(staff_api, owner_api, fake_stripe):
    """
    Stripe refuses (here: the payment was never charged at Stripe): 409
    refund_refused, the refund is kept `failed` for the audit trail, and the
    same key answers the same refusal again.
    """
    created = owner_api.post(
        "/api/payments/", {"amount": 5000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY="p"
    )
    Payment.objects.filter(pk=created.json()["id"]).update(status=Payment.Status.SUCCEEDED, amount_received=5000)
    payment = Payment.objects.get()

    response = refund(staff_api, payment, {"amount": 5000})

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "refund_refused"
    assert body["detail"].startswith("Stripe refused the refund: ")
    failed = Refund.objects.get()
    assert body["refund_id"] == str(failed.id)
    assert failed.status == Refund.Status.FAILED and failed.failure_reason
    assert_refund_invariants(payment)
    assert payment.refunded_amount == 0

    again = refund(staff_api, payment, {"amount": 5000})
    assert again.status_code == 409 and again.json() == body
    # Nothing is held by the failed refund: the whole amount may be asked for again.
    assert refund(staff_api, payment, {"amount": 5000}, key="new").json()["code"] == "refund_refused"
    assert "0 refund(s) awaiting Stripe" in retry_refunds()
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_retry_refunds_leaves_a_refund_being_sent_right_now_to_its_request(staff, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="in-flight")

    assert "0 refund(s) awaiting Stripe" in retry_refunds()

    reserved.refresh_from_db()
    assert reserved.status == Refund.Status.PENDING and reserved.stripe_call_started_at is not None
    assert fake_stripe.list("refunds") == []
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_a_refund_beyond_what_was_received_is_recorded_flagged_and_keeps_no_one_waiting(
    staff, paid_payment, fake_stripe
):
    """
    The local Stripe accepts over-refunds where Stripe refuses them: ours was
    made at Stripe (its answer lost), then a dashboard refund took most of the
    charge. Recording the dashboard's releases ours (the books keep within what
    was received); `retry_refunds` asks Stripe about it, finds it made, and
    records it: the books hold to their limits (refunded = received) and say so
    (books_mismatch), never an error that keeps the next refund waiting.
    """
    stuck_payment = paid_payment(amount=10_000)
    fake_stripe.add_fault("drop", method="POST", path=REFUNDS_AT_STRIPE, times=1)
    stuck, _ = refund_reserve(payment=stuck_payment, amount=5000, created_by=staff, idempotency_key="stuck")
    with pytest.raises(stripe_gateway.StripeError):
        refund_submit(refund=stuck)
    dashboard = stripe_gateway.refund_create(
        payment_intent_id=stuck_payment.stripe_payment_intent_id, amount=8000, idempotency_key="dash", metadata={}
    )
    refund_record_stripe_refund(stripe_refund=dashboard)
    stuck.refresh_from_db()
    assert (stuck.status, stuck.stripe_check_due) == (Refund.Status.CANCELED, True)
    payment = paid_payment(amount=10_000)
    waiting, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="waiting")
    expire_lease(waiting)

    output = retry_refunds()

    assert "1 recorded, 0 refused by Stripe (now failed), 0 still unanswered" in output
    assert f"refund {stuck.id}: released; succeeded" in output
    stuck.refresh_from_db()
    stuck_payment.refresh_from_db()
    assert stuck.status == Refund.Status.SUCCEEDED
    assert (stuck_payment.status, stuck_payment.refunded_amount, stuck_payment.amount_received) == (
        Payment.Status.REFUNDED,
        10_000,
        10_000,
    )
    assert "more than the 10000 received" in stuck_payment.books_mismatch
    waiting.refresh_from_db()
    assert waiting.status == Refund.Status.SUCCEEDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_stripe_timeout_leaves_the_refund_pending_and_it_is_made_once(staff_api, paid_payment, fake_stripe, settings):
    payment = paid_payment(amount=10_000)
    settings.STRIPE_TIMEOUT = 0.5
    fake_stripe.add_fault("hang", method="POST", path=REFUNDS_AT_STRIPE, times=1, seconds=1)

    response = refund(staff_api, payment, {"amount": 4000})

    assert response.status_code == 503
    assert Refund.objects.get().status == Refund.Status.PENDING
    assert_refund_invariants(payment)

    # The hung request finishes at the local Stripe a moment later; until then
    # the same key is still in use there and the refund stays unanswered.
    deadline = timezone.now() + timedelta(seconds=10)
    while Refund.objects.get().stripe_refund_id is None and timezone.now() < deadline:
        try:
            retry_refunds()
        except CommandError:
            pass
    assert Refund.objects.get().status == Refund.Status.SUCCEEDED
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db(transaction=True)
def test_two_retry_runs_at_once_send_a_refund_to_stripe_once(staff, paid_payment, fake_stripe):
    """
    retry_refunds on a cron on each of two servers: both list the same pending
    refund. The first to take its lease sends it; the other leaves it alone rather
    than send it too (which, once Stripe has forgotten the idempotency key after
    24 hours, would refund it twice).
    """
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=4000, created_by=staff, idempotency_key="stuck")
    expire_lease(reserved)
    # Stripe is slow, so the two runs overlap; the rule also counts every refund sent to Stripe.
    fake_stripe.add_fault("hang", method="POST", path=REFUNDS_AT_STRIPE, seconds=1.0)
    start = threading.Barrier(2)

    def retry() -> None:
        try:
            start.wait()
            refund_retry(refund=reserved)
        except stripe_gateway.StripeError:
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    [rule] = fake_stripe.faults()
    assert rule["fired"] == 1
    reserved.refresh_from_db()
    assert reserved.status == Refund.Status.SUCCEEDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)
    assert payment.refunded_amount == 4000


@pytest.mark.django_db
def test_retry_leaves_alone_a_refund_a_live_request_is_sending(staff, paid_payment, fake_stripe):
    """A refund whose lease is live is its sender's: refund_retry neither sends it nor changes it."""
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=4000, created_by=staff, idempotency_key="in-flight")

    left = refund_retry(refund=reserved)

    assert left.status == Refund.Status.PENDING and left.stripe_refund_id is None
    assert left.stripe_call_started_at == reserved.stripe_call_started_at
    assert fake_stripe.list("refunds") == []
    assert_refund_invariants(payment)
