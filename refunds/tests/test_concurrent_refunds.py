"""Simultaneous refund requests on one payment, each in its own database connection."""

import threading

import pytest
from django.db import connection

from payments.models import Payment
from payments.tests.factories import api_client_for
from refunds.models import Refund
from refunds.tests.invariants import assert_refund_invariants


@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_30_percent_refunds_give_exactly_three(staff, paid_payment, fake_stripe):
    """Every request passes the balance check alone; under the payment's lock only three fit."""
    payment = paid_payment(amount=10_000)
    start = threading.Barrier(10)
    answers = []

    def request_refund(n):
        try:
            client = api_client_for(staff)
            start.wait()
            response = client.post(
                f"/api/payments/{payment.id}/refunds/", {"amount": 3000}, format="json", HTTP_IDEMPOTENCY_KEY=f"k{n}"
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=request_refund, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(code for code, _ in answers) == [201] * 3 + [400] * 7
    assert {body["refundable_amount"] for code, body in answers if code == 400} == {1000}
    assert Refund.objects.filter(status=Refund.Status.SUCCEEDED).count() == 3
    assert Refund.objects.count() == 3
    assert len(fake_stripe.list("refunds")) == 3
    payment.refresh_from_db()
    assert payment.refunded_amount == 9000
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)
