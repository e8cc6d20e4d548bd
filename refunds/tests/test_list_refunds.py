"""GET /api/payments/{id}/refunds/: a payment's refunds for its owner and staff, a 404 for anyone else."""

import uuid

import pytest

from payments.tests.factories import UserFactory, api_client_for
from refunds.tests.factories import PaidPaymentFactory, RefundFactory


def listed(client, payment_id):
    return client.get(f"/api/payments/{payment_id}/refunds/")


@pytest.fixture
def payment(owner):
    payment = PaidPaymentFactory(user=owner, amount=10_000)
    RefundFactory(payment=payment, amount=1000, note="first")
    RefundFactory(payment=payment, amount=2000, note="second")
    RefundFactory(amount=500)  # someone else's
    return payment


@pytest.mark.django_db
def test_the_owner_sees_the_payments_refunds_newest_first(owner_api, payment):
    response = listed(owner_api, payment.id)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [r["note"] for r in body["results"]] == ["second", "first"]
    assert set(body["results"][0]) == {
        "id",
        "payment",
        "stripe_refund_id",
        "amount",
        "status",
        "reason",
        "note",
        "created_at",
    }
    assert {r["payment"] for r in body["results"]} == {str(payment.id)}


@pytest.mark.django_db
def test_staff_see_them_too_even_without_the_refund_permission(staff_api, payment):
    clerk = UserFactory(username="clerk", is_staff=True)

    assert listed(staff_api, payment.id).json()["count"] == 2
    assert listed(api_client_for(clerk), payment.id).json()["count"] == 2


@pytest.mark.django_db
def test_anyone_else_gets_404(outsider_api, payment):
    assert listed(outsider_api, payment.id).status_code == 404


@pytest.mark.django_db
def test_a_payment_that_does_not_exist_is_404(staff_api):
    assert listed(staff_api, uuid.uuid4()).status_code == 404


@pytest.mark.django_db
def test_anonymous_gets_nothing(client, payment):
    assert listed(client, payment.id).status_code in (401, 403)
