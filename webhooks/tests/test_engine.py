"""
The contract's webhook rows with real workers (`manage.py procrastinate worker`
processes, the `job_workers` fixture): the answer is 200 once the event is stored
and its job queued, before anything is applied; the worker then brings the
payment to Stripe's state. A worker SIGKILLed in the middle of an apply loses
nothing and applies nothing twice; a failing event is retried, then `failed`.
"""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest
from django.db import connection
from django.test import Client

from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import (
    dispute_object,
    payment_intent_event,
    post_event,
    refund_object,
    stripe_event,
    wait_until_applied,
)

WAIT_SECONDS = 30


@contextlib.contextmanager
def payments_locked(*payments):
    """
    Hold the payments' row locks from another connection, as a long transaction
    would: no apply can finish meanwhile, so what the endpoint answers is what it
    did without applying anything.
    """
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:
        other.execute(
            "SELECT id FROM payments_payment WHERE id = ANY(%s) FOR UPDATE", [[payment.pk for payment in payments]]
        )
        yield
        other.rollback()


def wait_for(predicate, timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def job_rows() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, lock FROM procrastinate_jobs WHERE task_name = 'webhooks.apply_event'")
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_the_answer_comes_before_the_apply_and_the_worker_reaches_stripes_state(job_workers, owner):
    """Each row of the contract's webhooks: 200 with the event pending and nothing changed; then applied."""
    to_succeed, to_fail, to_cancel, to_challenge = (PaymentFactory(user=owner, amount=2500) for _ in range(4))
    paid = PaidPaymentFactory(amount=4000)
    events = [
        payment_intent_event("payment_intent.succeeded", to_succeed),
        payment_intent_event("payment_intent.payment_failed", to_fail),
        payment_intent_event("payment_intent.canceled", to_cancel),
        payment_intent_event("payment_intent.requires_action", to_challenge),
        stripe_event("refund.created", refund_object(intent_id=paid.stripe_payment_intent_id, amount=1000)),
        stripe_event("charge.dispute.created", dispute_object(intent_id=paid.stripe_payment_intent_id, amount=4000)),
    ]
    client = Client()

    with payments_locked(to_succeed, to_fail, to_cancel, to_challenge, paid):
        answers = [post_event(client, event, apply=False).status_code for event in events]
        # Stored and queued, not applied: the workers are waiting for the payments' locks.
        assert answers == [200] * len(events)
        assert set(WebhookEvent.objects.values_list("outcome", flat=True)) == {WebhookEvent.Outcome.PENDING}
        assert len(job_rows()) == len(events)
        assert set(Payment.objects.values_list("status", flat=True)) == {
            Payment.Status.REQUIRES_PAYMENT_METHOD,
            Payment.Status.SUCCEEDED,
        }

    assert wait_until_applied(timeout=WAIT_SECONDS)
    assert set(WebhookEvent.objects.values_list("outcome", "attempts")) == {(WebhookEvent.Outcome.PROCESSED, 1)}
    statuses = {payment.pk: payment.status for payment in Payment.objects.all()}
    assert statuses == {
        to_succeed.pk: Payment.Status.SUCCEEDED,
        to_fail.pk: Payment.Status.FAILED,
        to_cancel.pk: Payment.Status.CANCELED,
        to_challenge.pk: Payment.Status.REQUIRES_ACTION,
        paid.pk: Payment.Status.PARTIALLY_REFUNDED,
    }
    assert Payment.objects.get(pk=paid.pk).refunded_amount == 1000
    assert Dispute.objects.get().payment == paid
    # A job that succeeded is gone: the event row is its record.
    assert job_rows() == []


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_answered_while_the_first_copy_waits_queues_nothing(job_workers, owner):
    payment = PaymentFactory(user=owner)
    event = payment_intent_event("payment_intent.succeeded", payment)
    client = Client()

    with payments_locked(payment):
        assert post_event(client, event, apply=False).status_code == 200
        assert post_event(client, event, apply=False).status_code == 200
        assert len(job_rows()) == 1

    assert wait_until_applied(timeout=WAIT_SECONDS)
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PROCESSED


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_in_the_middle_of_an_apply_loses_nothing_and_applies_once(job_workers):
    """
    SIGKILL both workers while one is inside the apply (waiting on the payment's
    lock): its transaction dies with it, its job stays `doing` under a dead
    worker; the supervisor starts new workers, whose stalled-job recovery queues
    the job again, and it applies once.
    """
    paid = PaidPaymentFactory(amount=3000)
    # A dashboard refund: applying it twice would record two refunds.
    event = stripe_event("refund.created", refund_object(intent_id=paid.stripe_payment_intent_id, amount=700))

    with payments_locked(paid):
        assert post_event(Client(), event, apply=False).status_code == 200
        assert wait_for(lambda: [status for status, _ in job_rows()] == ["doing"])
        for worker in job_workers:
            worker.kill()

    assert wait_until_applied(timeout=WAIT_SECONDS)
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert Refund.objects.count() == 1
    paid.refresh_from_db()
    assert (paid.refunded_amount, paid.status) == (700, Payment.Status.PARTIALLY_REFUNDED)
    assert all(worker.restarts >= 1 for worker in job_workers)
    assert any("of a dead worker is queued again" in worker.log_text() for worker in job_workers)


@pytest.mark.django_db(transaction=True)
def test_a_failing_event_is_retried_by_the_worker_then_failed(job_workers):
    """The test workers retry twice, a second apart (FAST_RECOVERY_ENV); production over about three days."""
    post_event(Client(), payment_intent_event("payment_intent.succeeded", status="some_future_status"), apply=False)

    assert wait_for(lambda: WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.FAILED)
    stored = WebhookEvent.objects.get()
    assert stored.attempts == 3
    assert "some_future_status" in stored.error
    assert Payment.objects.count() == 0
    assert job_rows() == []
