"""
Payment's money rules (Payment.apply_stripe_status, set_refunded_amount) and the
database constraints behind them: 0 <= refunded_amount <= amount_received <= amount.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from payments.models import Payment
from payments.tests.factories import PaymentFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = Payment.Status


def later(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"amount_received": 2001},
        {"refunded_amount": 1},
        {"amount_received": 1000, "refunded_amount": 1001},
        {"amount_capturable": 2001},
        {"amount_received": -1},
    ],
)
def test_the_database_refuses_books_outside_the_limits(fields):
    payment = PaymentFactory(amount=2000)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(**fields)


def test_the_amount_follows_the_payment_intent_until_it_is_final():
    payment = Payment(amount=10_000, currency="usd")
    payment.apply_stripe_status(S.REQUIRES_ACTION, at=later(1), amount=12_000)
    assert payment.amount == 12_000
    payment.apply_stripe_status(S.SUCCEEDED, at=later(2), amount=12_500, amount_received=12_500)
    assert (payment.amount, payment.amount_received, payment.status) == (12_500, 12_500, S.SUCCEEDED)
    payment.apply_stripe_status(S.SUCCEEDED, at=later(3), amount=99_000)
    assert payment.amount == 12_500


def test_older_news_moves_no_amount():
    payment = Payment(amount=10_000, currency="usd")
    payment.apply_stripe_status(S.REQUIRES_ACTION, at=later(5), amount=12_000)
    payment.apply_stripe_status(S.REQUIRES_PAYMENT_METHOD, at=later(1), amount=9_000)
    assert (payment.status, payment.amount) == (S.REQUIRES_ACTION, 12_000)


def test_an_authorization_is_capturable_and_nothing_else_is():
    payment = Payment(amount=10_000, currency="usd", capture_method=Payment.CaptureMethod.MANUAL)
    payment.apply_stripe_status(S.REQUIRES_CAPTURE, at=later(1), amount_received=0, amount_capturable=10_000)
    assert (payment.amount_capturable, payment.amount_received) == (10_000, 0)
    payment.apply_stripe_status(S.CANCELED, at=later(2), amount_received=0)
    assert (payment.status, payment.amount_capturable, payment.amount_received) == (S.CANCELED, 0, 0)


def test_succeeded_without_what_was_received_received_it_all_and_later_news_says_exactly():
    payment = Payment(amount=10_000, currency="usd")
    payment.apply_stripe_status(S.SUCCEEDED, at=later(2))
    assert payment.amount_received == 10_000
    # A read of the paid PaymentIntent (final: the status does not move) still corrects what was captured.
    payment.apply_stripe_status(S.SUCCEEDED, at=later(1), amount_received=6000)
    assert payment.amount_received == 6000
    # News of nothing received is older news: it changes nothing once paid.
    payment.apply_stripe_status(S.REQUIRES_CAPTURE, at=later(3), amount_received=0)
    assert (payment.status, payment.amount_received) == (S.SUCCEEDED, 6000)


def test_refunds_follow_what_was_received():
    payment = Payment(amount=10_000, currency="usd", status=S.SUCCEEDED, amount_received=6000)
    payment.set_refunded_amount(1000)
    assert (payment.status, payment.unrefunded_amount) == (S.PARTIALLY_REFUNDED, 5000)
    payment.set_refunded_amount(6000)
    assert (payment.status, payment.unrefunded_amount, payment.books_mismatch) == (S.REFUNDED, 0, "")


@pytest.mark.parametrize(
    ("capture_method", "received"), [(Payment.CaptureMethod.AUTOMATIC, 10_000), (Payment.CaptureMethod.MANUAL, 2500)]
)
def test_a_refund_known_before_the_capture_proves_money_was_received(capture_method, received):
    """Automatic capture: the whole amount; manual: at least what was refunded, until the capture's news says."""
    payment = Payment(amount=10_000, currency="usd", status=S.PROCESSING, capture_method=capture_method)
    payment.set_refunded_amount(2500)
    assert (payment.refunded_amount, payment.amount_received, payment.books_mismatch) == (2500, received, "")


def test_a_refund_above_an_unsettled_amount_proves_the_amount_was_at_least_that():
    payment = Payment(amount=10_000, currency="usd", status=S.PROCESSING)
    payment.set_refunded_amount(12_000)
    assert (payment.amount, payment.amount_received, payment.refunded_amount) == (12_000, 12_000, 12_000)
    assert payment.books_mismatch == ""


def test_refunds_above_what_was_received_are_held_there_and_said(caplog):
    payment = Payment(amount=10_000, currency="usd", status=S.SUCCEEDED, amount_received=6000)
    payment.set_refunded_amount(7000)
    assert (payment.refunded_amount, payment.status) == (6000, S.REFUNDED)
    assert payment.books_mismatch.startswith("Stripe's succeeded refunds add up to 7000")
    # The log says which payment and what kind, never the amounts.
    assert "refunds above received" in caplog.text and "7000" not in caplog.text


def test_stripe_saying_more_received_than_the_amount_is_held_there_and_said():
    payment = Payment(amount=10_000, currency="usd", status=S.SUCCEEDED, amount_received=10_000)
    payment.apply_stripe_status(S.SUCCEEDED, at=later(1), amount_received=12_000)
    assert payment.amount_received == 10_000
    assert "12000 received, more than the payment's amount of 10000" in payment.books_mismatch
