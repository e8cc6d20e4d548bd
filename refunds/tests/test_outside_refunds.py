"""
Our refunds waiting for Stripe's answer, and refunds made outside the app (issue
16, fault 3). An API refund left pending by a Stripe failure, then a full refund
made in Stripe's dashboard arriving by webhook: Stripe's truth wins, our pending
refund is released at once and checked at Stripe by a job, and the database
holds `pending + requires_action + succeeded <= amount_received` at every commit.
The local Stripe's fault layer (devkit/stripe_faults.py) makes Stripe fail.
"""

import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

import core.stripe_gateway as stripe_gateway
from devkit.workers import run_jobs_in_process
from payments.models import Payment
from refunds.models import Refund
from refunds.services import (
    RELEASED,
    RELEASED_NOT_MADE,
    RefundStillBeingSent,
    refund_record_stripe_refund,
    refund_reserve,
    refund_settle_released,
)
from refunds.tests.factories import PaidPaymentFactory, RefundFactory, request_refund
from refunds.tests.invariants import assert_refund_invariants
from webhooks.models import WebhookEvent
from webhooks.tests.factories import post_event, stripe_event

REFUNDS_AT_STRIPE = "^/v1/refunds$"


def dashboard_refund(payment: Payment, amount: int, key: str = "dashboard") -> dict:
    """A refund made in Stripe's dashboard: at Stripe, with none of our metadata."""
    return stripe_gateway.refund_create(
        payment_intent_id=payment.stripe_payment_intent_id, amount=amount, idempotency_key=key, metadata={}
    )


def retry_refunds() -> str:
    out = io.StringIO()
    try:
        call_command("retry_refunds", stdout=out)
    except CommandError as exc:
        out.write(str(exc))
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", ["error500", "hang"])
def test_a_dashboard_full_refund_releases_our_unanswered_refund_and_stripe_settles_it(
    fault, staff_api, paid_payment, fake_stripe, client, settings
):
    """
    Our full refund gets no answer (a 500, or a hang past our timeout); the
    dashboard refunds everything; its event is applied by the worker (every step
    committed, the database checking the invariant at each commit). Ours is
    released in that same commit, the job asks Stripe about it, and it is
    never sent again: the money went back once, through the dashboard.
    """
    settings.STRIPE_TIMEOUT = 0.5
    payment = paid_payment(amount=10_000)
    fake_stripe.add_fault(fault, method="POST", path=REFUNDS_AT_STRIPE, times=1, seconds=1.5)
    response = request_refund(staff_api, payment, {"amount": 10_000}, key="ours")
    assert response.status_code in (502, 503)
    ours = Refund.objects.get()
    assert (ours.status, ours.stripe_refund_id) == (Refund.Status.PENDING, None)
    if fault == "hang":
        # The hung request goes on at the local Stripe after our timeout: let it finish.
        time.sleep(1.5)

    made = dashboard_refund(payment, 10_000)
    assert post_event(client, stripe_event("refund.created", dict(made))).status_code == 200

    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PROCESSED
    ours.refresh_from_db()
    payment.refresh_from_db()
    theirs = Refund.objects.get(stripe_refund_id=made["id"])
    assert (theirs.status, theirs.created_by) == (Refund.Status.SUCCEEDED, None)
    assert (payment.status, payment.refunded_amount) == (Payment.Status.REFUNDED, 10_000)
    assert fault == "hang" or [r["id"] for r in fake_stripe.list("refunds")] == [made["id"]]
    if fault == "error500":
        assert (ours.status, ours.stripe_check_due, ours.failure_reason) == (
            Refund.Status.CANCELED,
            False,
            RELEASED_NOT_MADE,
        )
        assert_refund_invariants(payment, at_stripe=fake_stripe)
    else:
        # The hung request was made at the local Stripe (it accepts over-refunds; Stripe would
        # refuse): the check found it, and Stripe's truth is recorded, the books flagged.
        assert ours.status == Refund.Status.SUCCEEDED and ours.stripe_refund_id
        assert payment.books_mismatch

    assert "0 refund(s) awaiting Stripe" in retry_refunds()
    resent = request_refund(staff_api, payment, {"amount": 10_000}, key="ours")
    assert resent.status_code in (200, 201) and resent.json()["id"] == str(ours.id)
    assert len(fake_stripe.list("refunds")) == (1 if fault == "error500" else 2)


@pytest.mark.django_db(transaction=True)
def test_a_released_refund_stripe_made_after_all_takes_stripes_status(staff, paid_payment, fake_stripe, client):
    """
    Our refund was made at Stripe but its answer was lost; a dashboard refund
    that no longer fits is recorded (the local Stripe accepts it; Stripe would
    not): ours is released, then the check finds it at Stripe and records it as
    Stripe holds it. Stripe's refunds are all recorded, and the books say they
    do not fit.
    """
    payment = paid_payment(amount=10_000)
    fake_stripe.add_fault("drop", method="POST", path=REFUNDS_AT_STRIPE, times=1)
    ours, _ = refund_reserve(payment=payment, amount=4000, created_by=staff, idempotency_key="ours")
    with pytest.raises(stripe_gateway.StripeError):
        from refunds.services import refund_submit

        refund_submit(refund=ours)

    made = dashboard_refund(payment, 10_000)
    post_event(client, stripe_event("refund.created", dict(made)))

    ours.refresh_from_db()
    payment.refresh_from_db()
    assert ours.status == Refund.Status.SUCCEEDED
    assert ours.stripe_refund_id in {r["id"] for r in fake_stripe.list("refunds")}
    assert not ours.stripe_check_due
    assert "more than the 10000 received" in payment.books_mismatch


@pytest.mark.django_db
def test_a_dashboard_refund_that_fits_leaves_our_refund_waiting(staff, paid_payment, fake_stripe):
    """A partial dashboard refund that leaves room for ours releases nothing: ours is still sent by retry_refunds."""
    payment = paid_payment(amount=10_000)
    ours, _ = refund_reserve(payment=payment, amount=4000, created_by=staff, idempotency_key="ours")
    Refund.objects.filter(pk=ours.pk).update(stripe_call_started_at=None)

    refund_record_stripe_refund(stripe_refund=dashboard_refund(payment, 6000))

    ours.refresh_from_db()
    assert (ours.status, ours.stripe_check_due) == (Refund.Status.PENDING, False)
    assert "1 recorded" in retry_refunds()
    ours.refresh_from_db()
    assert ours.status == Refund.Status.SUCCEEDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_only_as_many_refunds_are_released_as_needed_newest_first(staff):
    """Three unanswered refunds and a dashboard refund taking room for one: the newest goes, the others wait."""
    payment = PaidPaymentFactory(amount=9000)
    first, second, third = (
        refund_reserve(payment=payment, amount=3000, created_by=staff, idempotency_key=f"k{n}")[0] for n in range(3)
    )

    refund_record_stripe_refund(
        stripe_refund={
            "id": "re_dash",
            "status": "succeeded",
            "amount": 2000,
            "payment_intent": payment.stripe_payment_intent_id,
        }
    )

    statuses = {
        r.pk: (r.status, r.stripe_check_due) for r in Refund.objects.filter(pk__in=[first.pk, second.pk, third.pk])
    }
    assert statuses[third.pk] == (Refund.Status.CANCELED, True)
    assert statuses[first.pk] == statuses[second.pk] == (Refund.Status.PENDING, False)
    assert Refund.objects.get(pk=third.pk).failure_reason == RELEASED
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_the_check_waits_while_our_request_may_still_reach_stripe(staff):
    """Released while its own request is still out: the check is retried later, not settled yet."""
    payment = PaidPaymentFactory(amount=5000)
    ours, _ = refund_reserve(payment=payment, amount=5000, created_by=staff, idempotency_key="ours")
    refund_record_stripe_refund(
        stripe_refund={
            "id": "re_dash",
            "status": "succeeded",
            "amount": 5000,
            "payment_intent": payment.stripe_payment_intent_id,
        }
    )
    ours.refresh_from_db()
    assert ours.status == Refund.Status.CANCELED

    with pytest.raises(RefundStillBeingSent):
        refund_settle_released(refund=ours)

    ours.refresh_from_db()
    assert ours.stripe_check_due


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_to_commit_refunds_beyond_what_was_received():
    """The invariant is the database's: a commit setting aside more than was received is refused."""
    payment = PaidPaymentFactory(amount=1000)
    RefundFactory(payment=payment, amount=600)

    with pytest.raises(IntegrityError, match="refund_held_within_received"):
        with transaction.atomic():
            RefundFactory(payment=payment, amount=600)
    with pytest.raises(IntegrityError, match="refund_held_within_received"):
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk).update(amount_received=500)
    with pytest.raises(IntegrityError, match="refund_held_within_received"):
        with transaction.atomic():
            Refund.objects.filter(payment=payment).update(amount=1001)

    # Within one transaction the books may pass through a state that does not fit, as long as the commit fits.
    with transaction.atomic():
        extra = RefundFactory(payment=payment, amount=600)
        Refund.objects.filter(pk=extra.pk).update(status=Refund.Status.FAILED)
    assert payment.refunds.count() == 2


@pytest.mark.django_db
def test_retry_refunds_settles_a_check_whose_job_did_not(staff, paid_payment, fake_stripe):
    """A released refund whose job gave up is settled by the next `retry_refunds` run."""
    payment = paid_payment(amount=5000)
    ours, _ = refund_reserve(payment=payment, amount=5000, created_by=staff, idempotency_key="ours")
    Refund.objects.filter(pk=ours.pk).update(stripe_call_started_at=None)
    refund_record_stripe_refund(stripe_refund=dashboard_refund(payment, 5000))

    output = retry_refunds()

    ours.refresh_from_db()
    assert f"refund {ours.id}: released; canceled" in output
    assert (ours.status, ours.stripe_check_due, ours.failure_reason) == (
        Refund.Status.CANCELED,
        False,
        RELEASED_NOT_MADE,
    )
    assert run_jobs_in_process() is not None
    assert len(fake_stripe.list("refunds")) == 1


@pytest.mark.django_db(transaction=True)
def test_dashboard_refunds_during_stripe_faults_end_as_stripes_books(staff_api, owner, fake_stripe, client):
    """
    Twelve payments, each with our API refund through a 500, a lost answer or no
    fault, and a dashboard refund of what Stripe has left arriving by webhook:
    every commit holds the invariant (the database checks it), and every payment
    ends with Stripe's refunds, recorded once, nothing left waiting.
    """
    from devkit.scenarios.outside_refunds import outside_refunds_during_faults
    from devkit.scenarios.refund_faults import paid_payments

    run = outside_refunds_during_faults(
        payments=paid_payments(count=12, user=owner, amount=9000),
        staff_api=staff_api,
        client=client,
        fake_stripe=fake_stripe,
        post_event=post_event,
        stripe_event=stripe_event,
        seed=16,
    )

    assert run.faults["error500"] and run.faults["drop"], run
    assert run.released > 0, run
    assert run.left_waiting == 0, run
    assert run.violations == [], run
