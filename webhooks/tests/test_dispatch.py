"""Each event goes to one handler chosen by its type; unknown types are ignored; failures are kept and retried."""

import pytest
from django.core.management import call_command

from payments.models import Payment
from refunds.models import Refund
from webhooks.handlers import HANDLERS
from webhooks.models import WebhookEvent
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


@pytest.mark.django_db
def test_a_failing_handler_rolls_back_its_changes_and_answers_500(client):
    """The PaymentIntent would be adopted, but its status is unreadable: no payment is left behind."""
    event = payment_intent_event("payment_intent.succeeded", status="some_future_status")

    response = post_event(client, event)

    assert response.status_code == 500
    assert Payment.objects.count() == 0
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.FAILED
    assert "some_future_status" in stored.error


@pytest.fixture
def refund_before_its_payment(client):
    """A dashboard refund's event that arrives before any event of its PaymentIntent."""
    intent_created = payment_intent_event("payment_intent.succeeded", intent_id="pi_dashboard")
    refund_event = stripe_event("refund.created", refund_object(intent_id="pi_dashboard", amount=300))
    response = post_event(client, refund_event)
    return response, refund_event, intent_created


@pytest.mark.django_db
def test_a_refund_of_an_unknown_payment_is_failed_so_that_stripe_retries(refund_before_its_payment):
    response, refund_event, _ = refund_before_its_payment

    assert response.status_code == 500
    stored = WebhookEvent.objects.get(stripe_event_id=refund_event["id"])
    assert stored.outcome == WebhookEvent.Outcome.FAILED
    assert "pi_dashboard" in stored.error
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_stripes_retry_of_a_failed_event_runs_its_handler_again(client, refund_before_its_payment):
    _, refund_event, intent_succeeded = refund_before_its_payment
    assert post_event(client, intent_succeeded).status_code == 200

    response = post_event(client, refund_event)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id=refund_event["id"])
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED and stored.error == ""
    payment = Payment.objects.get(stripe_payment_intent_id="pi_dashboard")
    assert stored.payment == payment
    assert payment.refunded_amount == 300
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED


@pytest.mark.django_db
def test_process_webhooks_failed_reprocesses_failed_events(client, refund_before_its_payment, capsys):
    _, refund_event, intent_succeeded = refund_before_its_payment
    post_event(client, intent_succeeded)

    call_command("process_webhooks", "--failed")

    assert "1 processed" in capsys.readouterr().out
    assert WebhookEvent.objects.get(stripe_event_id=refund_event["id"]).outcome == WebhookEvent.Outcome.PROCESSED
    assert Refund.objects.get().amount == 300


@pytest.mark.django_db
def test_process_webhooks_reports_events_that_fail_again(refund_before_its_payment, capsys):
    call_command("process_webhooks", "--failed")

    output = capsys.readouterr()
    assert "1 still failed" in output.out
    assert "pi_dashboard" in output.err


@pytest.mark.django_db
def test_a_refund_of_a_charge_without_payment_intent_is_ignored(client):
    """Charges made without a PaymentIntent are not payments of this site."""
    response = post_event(client, stripe_event("refund.created", refund_object(intent_id=None)))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.IGNORED
    assert Refund.objects.count() == 0
