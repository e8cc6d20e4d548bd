"""One meaning per name: refundable = what a new refund may take; unrefunded = what succeeded refunds left."""

import pytest

from refunds.models import Refund
from refunds.services import payment_refundable_amount, payment_sync_refunded_amount
from refunds.tests.factories import PaidPaymentFactory, RefundFactory


@pytest.mark.django_db
def test_refunds_under_way_count_against_the_refundable_amount_only():
    payment = PaidPaymentFactory(amount=2000)
    RefundFactory(payment=payment, amount=500, status=Refund.Status.SUCCEEDED)
    RefundFactory(payment=payment, amount=300, status=Refund.Status.PENDING)
    RefundFactory(payment=payment, amount=200, status=Refund.Status.REQUIRES_ACTION)
    RefundFactory(payment=payment, amount=700, status=Refund.Status.FAILED)
    RefundFactory(payment=payment, amount=100, status=Refund.Status.CANCELED)
    payment_sync_refunded_amount(payment=payment)

    assert payment.refunded_amount == 500
    assert payment.unrefunded_amount == 1500
    assert payment_refundable_amount(payment=payment) == 1000
