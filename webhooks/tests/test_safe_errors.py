"""
No stored error, log line, command output or admin page carries a row PostgreSQL
quoted, or a Stripe secret (issue 16, fault 4): each surface, with a real
constraint failure whose text holds a payment's client secret.
"""

import io
import logging

import pytest
from django.core.management import CommandError, call_command

from core.tests.test_errors import SECRET, row_error
from payments.models import Payment
from payments.tests.factories import PaymentFactory
from refunds.tests.factories import RefundFactory
from webhooks.handlers import HANDLERS
from webhooks.models import WebhookEvent
from webhooks.tests.factories import payment_intent_event, post_event, receive_and_apply


def logged(caplog) -> str:
    """Every captured record as the site's console handler writes it, and as captured raw."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    return "\n".join([caplog.text, *(handler.format(record) for record in caplog.records)])


def assert_no_row_data(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert "Failing row" not in text and "DETAIL" not in text.replace("DETAIL: [row data removed]", "")


@pytest.mark.django_db
def test_an_event_whose_handler_hits_a_constraint_keeps_the_constraint_not_the_row(caplog):
    """A payment_intent event Stripe could never send (a negative amount) fails on a check: named, row untold."""
    payment = PaymentFactory(client_secret=SECRET)

    with caplog.at_level(logging.INFO):
        event = receive_and_apply(payment_intent_event("payment_intent.processing", payment, amount=-5))

    assert event.outcome == WebhookEvent.Outcome.FAILED
    assert "CheckViolation" in event.error and "payment_amount_positive" in event.error
    assert_no_row_data(event.error, logged(caplog))


@pytest.mark.django_db
def test_an_error_raised_from_a_database_error_logs_no_traceback_of_it(caplog, monkeypatch):
    """A handler's own exception raised from a constraint failure: neither the event nor the log tells the row."""
    cause = row_error(amount=-5)

    def failing(event):
        raise RuntimeError("could not record the payment") from cause

    monkeypatch.setitem(HANDLERS, "payment_intent.processing", failing)
    with caplog.at_level(logging.INFO):
        event = receive_and_apply(payment_intent_event("payment_intent.processing", PaymentFactory()))

    assert event.error.startswith("RuntimeError from IntegrityError: CheckViolation")
    assert_no_row_data(event.error, logged(caplog))


@pytest.mark.django_db
def test_retry_refunds_reports_a_database_failure_without_the_row(caplog, monkeypatch):
    """`retry_refunds` output and log name the refund and the constraint; no row, no secret."""
    refund = RefundFactory()
    cause = row_error(amount=-5)

    def failing(*, refund):
        raise cause

    monkeypatch.setattr("refunds.management.commands.retry_refunds.refund_retry", failing)
    out, err = io.StringIO(), io.StringIO()
    with caplog.at_level(logging.INFO), pytest.raises(CommandError) as raised:
        call_command("retry_refunds", stdout=out, stderr=err)

    assert f"refund {refund.id}: could not be recorded (IntegrityError: CheckViolation" in out.getvalue()
    assert_no_row_data(out.getvalue(), err.getvalue(), str(raised.value), logged(caplog))


@pytest.mark.django_db
def test_reconcile_reports_a_database_failure_without_the_row(caplog, monkeypatch):
    """`reconcile_stripe` output and log name the payment and the constraint; no row, no secret."""
    payment = PaymentFactory(status=Payment.Status.PROCESSING)
    cause = row_error(amount=-5)

    def failing(*, payment):
        raise cause

    monkeypatch.setattr("webhooks.management.commands.reconcile_stripe.payment_reconcile", failing)
    out, err = io.StringIO(), io.StringIO()
    with caplog.at_level(logging.INFO):
        call_command("reconcile_stripe", stdout=out, stderr=err)

    assert f"payment {payment.pk}: failed: IntegrityError: CheckViolation" in err.getvalue()
    assert_no_row_data(out.getvalue(), err.getvalue(), logged(caplog))


@pytest.mark.django_db
def test_the_admin_event_page_shows_no_client_secret_and_no_row(admin_client, client):
    """Staff read Stripe's payloads with every secret redacted, and an old error's row data taken out."""
    payment = PaymentFactory()
    post_event(client, payment_intent_event("payment_intent.processing", payment))
    event = WebhookEvent.objects.get()
    assert event.payload["data"]["object"]["client_secret"]
    event.payload["data"]["object"]["client_secret"] = SECRET
    event.error = f'IntegrityError: violates check constraint "x"\nDETAIL:  Failing row contains (1, {SECRET}).'
    event.save()

    response = admin_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert SECRET not in content and "Failing row" not in content
    assert "[redacted]" in content and "payment_intent.processing" in content
