"""Each event goes to one handler chosen by its type, run by a job; unknown types are ignored; failures are retried."""

import pytest
from django.core.management import call_command
from django.db import connection

from devkit.workers import run_jobs_in_process
from payments.models import Payment
from refunds.models import Refund
from webhooks.handlers import HANDLERS
from webhooks.models import WebhookEvent
from webhooks.services import _queue_apply
from webhooks.tests.factories import payment_intent_event, post_event, refund_object, stripe_event

CONTRACT_TYPES = [
    "payment_intent.created",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.closed",
]


def test_every_type_the_contract_lists_has_a_handler():
    assert set(CONTRACT_TYPES) <= set(HANDLERS)


@pytest.mark.django_db
def test_an_unknown_type_is_stored_as_ignored(client):
    event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})

    response = post_event(client, event)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.IGNORED
    assert stored.type == "customer.created"
    assert stored.object_id == "cus_1"
    assert stored.payload == event
    assert stored.processed_at is not None


def queued_jobs():
    """(status, priority, whether scheduled for later) of every job left in the queue."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, priority, coalesce(scheduled_at > now(), false) FROM procrastinate_jobs ORDER BY id"
        )
        return cursor.fetchall()


@pytest.mark.django_db
def test_a_failing_handler_rolls_back_its_changes_and_its_job_is_retried_later(client):
    """The PaymentIntent would be adopted, but its status is unreadable: no payment is left behind."""
    event = payment_intent_event("payment_intent.succeeded", status="some_future_status")

    response = post_event(client, event)

    assert response.status_code == 200
    assert Payment.objects.count() == 0
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.PENDING
    assert stored.attempts == 1
    assert "some_future_status" in stored.error
    # Queued again, for later, behind any fresh event of its PaymentIntent.
    assert queued_jobs() == [("todo", -1, True)]


@pytest.mark.django_db
def test_after_its_last_attempt_a_failing_event_is_failed(client, settings):
    settings.WEBHOOK_APPLY_RETRIES = 2
    event = payment_intent_event("payment_intent.succeeded", status="some_future_status")
    post_event(client, event)

    run_jobs_in_process(due_now=True)
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PENDING
    run_jobs_in_process(due_now=True)

    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.FAILED
    assert stored.attempts == 3
    assert stored.error == "ValueError: Unknown PaymentIntent status 'some_future_status'"
    assert stored.processed_at is not None
    assert Payment.objects.count() == 0
    # The event holds the failure; its job is done with.
    assert queued_jobs() == []


@pytest.fixture
def refund_before_its_payment(client):
    """
    A dashboard refund's event that arrives before any event of its PaymentIntent,
    while Stripe cannot be asked about that PaymentIntent (no local Stripe here).
    """
    intent_created = payment_intent_event("payment_intent.succeeded", intent_id="pi_dashboard")
    refund_event = stripe_event("refund.created", refund_object(intent_id="pi_dashboard", amount=300))
    response = post_event(client, refund_event)
    return response, refund_event, intent_created


@pytest.mark.django_db
def test_a_refund_of_an_unknown_payment_waits_while_stripe_cannot_be_asked(refund_before_its_payment):
    response, refund_event, _ = refund_before_its_payment

    assert response.status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id=refund_event["id"])
    assert stored.outcome == WebhookEvent.Outcome.PENDING
    assert "StripeUnavailable" in stored.error and "pi_dashboard" in stored.error
    assert Refund.objects.count() == 0
    assert queued_jobs() == [("todo", -1, True)]


@pytest.mark.django_db
def test_the_retry_of_a_waiting_event_applies_it_once_its_payment_is_known(client, refund_before_its_payment):
    _, refund_event, intent_succeeded = refund_before_its_payment
    assert post_event(client, intent_succeeded).status_code == 200

    run_jobs_in_process(due_now=True)

    stored = WebhookEvent.objects.get(stripe_event_id=refund_event["id"])
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED and stored.error == ""
    assert stored.attempts == 2
    payment = Payment.objects.get(stripe_payment_intent_id="pi_dashboard")
    assert stored.payment == payment
    assert payment.refunded_amount == 300
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED


@pytest.fixture
def refund_failed_before_its_payment(client, settings):
    """The same refund event, whose only attempt failed: `failed`."""
    settings.WEBHOOK_APPLY_RETRIES = 0
    intent_succeeded = payment_intent_event("payment_intent.succeeded", intent_id="pi_dashboard")
    refund_event = stripe_event("refund.created", refund_object(intent_id="pi_dashboard", amount=300))
    post_event(client, refund_event)
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.FAILED
    return refund_event, intent_succeeded


@pytest.mark.django_db
def test_process_webhooks_failed_reprocesses_failed_events(client, refund_failed_before_its_payment, capsys):
    refund_event, intent_succeeded = refund_failed_before_its_payment
    post_event(client, intent_succeeded)

    call_command("process_webhooks", "--failed")

    assert "1 processed" in capsys.readouterr().out
    assert WebhookEvent.objects.get(stripe_event_id=refund_event["id"]).outcome == WebhookEvent.Outcome.PROCESSED
    assert Refund.objects.get().amount == 300


@pytest.mark.django_db
def test_process_webhooks_reports_events_that_fail_again(refund_failed_before_its_payment, capsys):
    call_command("process_webhooks", "--failed")

    output = capsys.readouterr()
    assert "1 still failed" in output.out
    assert "pi_dashboard" in output.err


@pytest.mark.django_db
def test_process_webhooks_failed_queue_gives_failed_events_back_to_the_workers(
    client, refund_failed_before_its_payment, capsys
):
    refund_event, intent_succeeded = refund_failed_before_its_payment
    post_event(client, intent_succeeded)

    call_command("process_webhooks", "--failed", "--queue")

    assert "Queued 1 failed event(s)" in capsys.readouterr().out
    stored = WebhookEvent.objects.get(stripe_event_id=refund_event["id"])
    assert stored.outcome == WebhookEvent.Outcome.PENDING
    assert queued_jobs() == [("todo", 0, False)]
    run_jobs_in_process()
    stored.refresh_from_db()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert Refund.objects.get().amount == 300


@pytest.mark.django_db
def test_a_refund_of_a_charge_without_payment_intent_is_ignored(client):
    """Charges made without a PaymentIntent are not payments of this site."""
    response = post_event(client, stripe_event("refund.created", refund_object(intent_id=None)))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.IGNORED
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_the_job_stored_with_the_event_is_the_one_procrastinate_would_queue(client):
    """The endpoint queues in its INSERT's statement; the job must be what apply_event.defer() makes."""
    post_event(client, stripe_event("refund.created", refund_object(intent_id="pi_same_job")), apply=False)
    stored = WebhookEvent.objects.get()

    _queue_apply(stored)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, status, attempts"
            " FROM procrastinate_jobs ORDER BY id"
        )
        by_the_endpoint, by_procrastinate = cursor.fetchall()
    assert by_the_endpoint == by_procrastinate
    assert by_the_endpoint[:4] == ("webhooks", "webhooks.apply_event", 0, "pi_same_job")
