"""`manage.py seed_demo_data`: fast demo data whose books add up."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F, Q, Sum

from payments.models import Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent


@pytest.mark.django_db
def test_seeds_the_asked_numbers_with_consistent_books(capsys):
    call_command("seed_demo_data", payments=600, refunds=100, events=30, chunk=250, seed=7)

    assert Payment.objects.count() == 600
    assert Refund.objects.count() == 100
    assert WebhookEvent.objects.count() == 30
    for payment in Payment.objects.filter(refunds__isnull=False).annotate(
        succeeded=Sum("refunds__amount", filter=Q(refunds__status=Refund.Status.SUCCEEDED))
    ):
        assert payment.refunded_amount == (payment.succeeded or 0)
        expected = {0: "succeeded", payment.amount: "refunded"}.get(payment.refunded_amount, "partially_refunded")
        assert payment.status == expected
    authorized = Payment.objects.filter(status=Payment.Status.REQUIRES_CAPTURE)
    assert authorized.exists()
    assert not authorized.filter(Q(capture_before__isnull=True) | ~Q(amount_capturable=F("amount"))).exists()
    assert not Payment.objects.filter(status__in=Payment.PAID).exclude(amount_received=F("amount")).exists()
    assert "600 / 600 payments" in capsys.readouterr().out


@pytest.mark.django_db
def test_refuses_more_refunds_than_paid_payments():
    with pytest.raises(CommandError, match="At most"):
        call_command("seed_demo_data", payments=10, refunds=10)
