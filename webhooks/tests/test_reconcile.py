"""reconcile_stripe: payments and refunds whose webhooks never came are brought up to Stripe's state."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import confirm_at_stripe, create_payment
from refunds.models import Refund
from refunds.tests.factories import RefundFactory


def reconcile(capsys, *args):
    call_command("reconcile_stripe", *args)
    return capsys.readouterr()


@pytest.fixture
def paid(owner_api, fake_stripe):
    """A payment paid at Stripe whose webhook was lost: still requires_payment_method here."""
    payment = create_payment(owner_api, "reconcile-paid")
    assert confirm_at_stripe(payment)["status"] == "succeeded"
    return payment


@pytest.mark.django_db
def test_a_payment_whose_webhook_was_lost_is_brought_to_stripes_state(paid, capsys):
    output = reconcile(capsys)

    paid.refresh_from_db()
    assert paid.status == Payment.Status.SUCCEEDED
    assert "payments: 1 checked, 1 updated, 0 not brought up to date" in output.out


@pytest.mark.django_db
def test_reconciling_twice_changes_nothing_more(paid, capsys):
    reconcile(capsys)

    output = reconcile(capsys)

    assert "payments: 0 checked, 0 updated" in output.out
    paid.refresh_from_db()
    assert paid.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
def test_final_payments_intents_are_not_read_again(paid, fake_stripe, capsys):
    reconcile(capsys)
    fake_stripe.add_fault("error500", path="^/v1/payment_intents")

    reconcile(capsys)

    assert [rule["fired"] for rule in fake_stripe.faults()] == [0]


@pytest.mark.django_db
def test_a_dashboard_refund_whose_events_were_lost_is_recorded(paid, fake_stripe, capsys):
    """A refund made at Stripe outside the app, with no webhook: reconcile finds it among the paid payment's."""
    reconcile(capsys)
    made_at_stripe = stripe_gateway.refund_create(
        payment_intent_id=paid.stripe_payment_intent_id, amount=700, idempotency_key="dashboard-1", metadata={}
    )

    output = reconcile(capsys)

    refund = Refund.objects.get()
    assert refund.stripe_refund_id == made_at_stripe["id"]
    assert refund.created_by is None and refund.status == Refund.Status.SUCCEEDED
    paid.refresh_from_db()
    assert paid.refunded_amount == 700
    assert paid.status == Payment.Status.PARTIALLY_REFUNDED
    assert "paid payments: 1 checked, 1 updated" in output.out
    assert "paid payments: 1 checked, 0 updated" in reconcile(capsys).out


@pytest.mark.django_db
def test_a_stripe_failure_on_one_payment_is_reported_and_the_rest_go_on(paid, owner_api, fake_stripe, capsys):
    waiting = create_payment(owner_api, "reconcile-waiting")
    fake_stripe.add_fault("error500", path=paid.stripe_payment_intent_id)

    output = reconcile(capsys)

    assert "payments: 2 checked, 0 updated, 1 not brought up to date" in output.out
    assert str(paid.pk) in output.err
    fake_stripe.clear_faults()
    assert "1 updated" in reconcile(capsys).out
    waiting.refresh_from_db()
    assert waiting.status == Payment.Status.REQUIRES_PAYMENT_METHOD


@pytest.mark.django_db
def test_since_leaves_older_payments_alone(paid, capsys):
    Payment.objects.filter(pk=paid.pk).update(created_at=timezone.now() - timedelta(hours=5))

    output = reconcile(capsys, "--since", "2")

    assert "payments: 0 checked" in output.out
    paid.refresh_from_db()
    assert paid.status == Payment.Status.REQUIRES_PAYMENT_METHOD


@pytest.mark.django_db
def test_a_pending_refund_that_never_got_stripes_answer_is_found_by_its_metadata(paid, capsys):
    reconcile(capsys)
    refund = RefundFactory(payment=paid, amount=500)
    stripe_gateway.refund_create(
        payment_intent_id=paid.stripe_payment_intent_id,
        amount=500,
        idempotency_key=refund.stripe_idempotency_key,
        metadata={"refund_id": str(refund.id)},
    )

    output = reconcile(capsys)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.stripe_refund_id.startswith("re_")
    paid.refresh_from_db()
    assert paid.refunded_amount == 500
    assert paid.status == Payment.Status.PARTIALLY_REFUNDED
    assert "refunds: 1 checked, 1 updated" in output.out


@pytest.mark.django_db
def test_a_pending_refund_with_a_stripe_id_is_read_back(paid, capsys):
    reconcile(capsys)
    refund = RefundFactory(payment=paid, amount=2000)
    stripe_refund = stripe_gateway.refund_create(
        payment_intent_id=paid.stripe_payment_intent_id,
        amount=2000,
        idempotency_key=refund.stripe_idempotency_key,
        metadata={"refund_id": str(refund.id)},
    )
    Refund.objects.filter(pk=refund.pk).update(stripe_refund_id=stripe_refund["id"])

    reconcile(capsys)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    paid.refresh_from_db()
    assert paid.status == Payment.Status.REFUNDED


@pytest.mark.django_db
def test_a_pending_refund_stripe_never_got_is_left_for_retry_refunds(paid, capsys):
    reconcile(capsys)
    refund = RefundFactory(payment=paid, amount=500)

    output = reconcile(capsys)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert "refunds: 1 checked, 0 updated, 1 not brought up to date" in output.out
    assert "retry_refunds" in output.err


@pytest.mark.django_db
def test_long_runs_show_progress(paid, owner_api, capsys, monkeypatch):
    monkeypatch.setattr("webhooks.management.commands.reconcile_stripe.PROGRESS_EVERY", 1)
    create_payment(owner_api, "reconcile-second")

    output = reconcile(capsys)

    assert "… payments: 1/2" in output.out and "… payments: 2/2" in output.out
