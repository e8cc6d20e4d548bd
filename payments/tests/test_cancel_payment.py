"""POST /api/payments/{id}/cancel/: canceled at Stripe and here, 409 once paid."""

import pytest

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import PaymentFactory, confirm_at_stripe, create_payment


@pytest.mark.django_db
def test_cancel_cancels_at_stripe_and_here(owner_api, fake_stripe):
    payment = create_payment(owner_api, "cancel-1", amount=1500, currency="eur")

    response = owner_api.post(f"/api/payments/{payment.id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CANCELED
    assert stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["status"] == "canceled"


@pytest.mark.django_db
def test_cancel_twice_is_harmless(owner_api, fake_stripe):
    payment = create_payment(owner_api, "cancel-1", amount=1500, currency="eur")

    owner_api.post(f"/api/payments/{payment.id}/cancel/")
    response = owner_api.post(f"/api/payments/{payment.id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"


@pytest.mark.django_db
def test_cancel_after_success_at_stripe_is_409_and_records_the_success(owner_api, fake_stripe):
    """Paid at Stripe before any webhook reached us: Stripe refuses, and we learn the truth."""
    payment = create_payment(owner_api, "cancel-1", amount=1500, currency="eur")
    assert confirm_at_stripe(payment)["status"] == "succeeded"

    response = owner_api.post(f"/api/payments/{payment.id}/cancel/")

    assert response.status_code == 409
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status", [Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED, Payment.Status.REFUNDED]
)
def test_cancel_of_a_paid_payment_is_409(owner_api, owner, status):
    payment = PaymentFactory(user=owner, status=status)

    response = owner_api.post(f"/api/payments/{payment.id}/cancel/")

    assert response.status_code == 409
    assert status in response.json()["detail"]


@pytest.mark.django_db
def test_cancel_of_someone_elses_payment_is_404(outsider_api, owner, fake_stripe):
    payment = PaymentFactory(user=owner)

    assert outsider_api.post(f"/api/payments/{payment.id}/cancel/").status_code == 404
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD


@pytest.mark.django_db
def test_cancel_while_stripe_is_down_is_503_and_changes_nothing(owner_api, fake_stripe):
    payment = create_payment(owner_api, "cancel-1", amount=1500, currency="eur")
    fake_stripe.add_fault("drop", path="/cancel$")
    fake_stripe.add_fault("error500", path="^/v1/payment_intents/")

    response = owner_api.post(f"/api/payments/{payment.id}/cancel/")

    assert response.status_code == 503
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
