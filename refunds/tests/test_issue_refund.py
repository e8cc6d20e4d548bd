"""POST /api/payments/{id}/refunds/: partial, cumulative and full refunds, and the key's replay rules."""

from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import Dispute, Payment
from payments.tests.factories import UserFactory, api_client_for
from refunds.models import Refund
from refunds.services import refund_record_stripe_refund, refund_reserve
from refunds.tests.factories import request_refund as refund
from refunds.tests.invariants import assert_refund_invariants


@pytest.mark.django_db
def test_a_partial_refund_is_made_at_stripe_and_recorded(staff_api, staff, paid_payment, fake_stripe):
    """The refund is answered with its Stripe id and the payment becomes partially refunded."""
    payment = paid_payment(amount=10_000)

    response = refund(staff_api, payment, {"amount": 2500, "reason": "requested_by_customer", "note": "Ticket 7"})

    assert response.status_code == 201
    body = response.json()
    stored = Refund.objects.get()
    # Staff who may refund but not view refunds get the refund without the desk's note.
    assert set(body) == {
        "id",
        "payment",
        "stripe_refund_id",
        "amount",
        "status",
        "reason",
        "failure_reason",
        "created_at",
    }
    assert body["id"] == str(stored.id) and body["payment"] == str(payment.id)
    assert body["amount"] == 2500 and body["status"] == "succeeded"
    assert body["reason"] == "requested_by_customer" and stored.note == "Ticket 7"
    assert "Idempotent-Replayed" not in response.headers
    assert stored.created_by == staff
    [at_stripe] = fake_stripe.list("refunds", payment_intent=payment.stripe_payment_intent_id)
    assert body["stripe_refund_id"] == at_stripe["id"]
    assert at_stripe["amount"] == 2500
    assert at_stripe["metadata"] == {"refund_id": str(stored.id), "payment_id": str(payment.id)}
    payment.refresh_from_db()
    assert payment.refunded_amount == 2500
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_partial_refunds_adding_up_to_the_charge_leave_it_refunded(staff_api, paid_payment, fake_stripe):
    payment = paid_payment(amount=9000)

    for n in range(3):
        assert refund(staff_api, payment, {"amount": 3000}, key=f"part-{n}").status_code == 201
        assert_refund_invariants(payment, at_stripe=fake_stripe)

    assert payment.refunded_amount == 9000
    assert payment.status == Payment.Status.REFUNDED
    assert len(fake_stripe.list("refunds")) == 3


@pytest.mark.django_db
def test_without_an_amount_all_that_is_left_is_refunded(staff_api, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)
    refund(staff_api, payment, {"amount": 4000}, key="first")

    response = refund(staff_api, payment, key="rest")

    assert response.status_code == 201
    assert response.json()["amount"] == 6000
    assert_refund_invariants(payment, at_stripe=fake_stripe)
    assert payment.status == Payment.Status.REFUNDED


@pytest.mark.django_db
def test_same_key_same_body_replays_without_a_second_refund(staff_api, paid_payment, fake_stripe):
    payment = paid_payment()
    first = refund(staff_api, payment, {"amount": 1000})

    again = refund(staff_api, payment, {"amount": 1000})

    assert again.status_code == first.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Refund.objects.count() == 1
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_same_key_other_body_is_422_and_refunds_nothing_more(staff_api, paid_payment, fake_stripe):
    payment = paid_payment()
    refund(staff_api, payment, {"amount": 1000})

    response = refund(staff_api, payment, {"amount": 2000})

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Refund.objects.count() == 1
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_same_key_by_another_staff_user_is_422(staff_api, staff, paid_payment, fake_stripe):
    """A key names one person's request: a colleague reusing it does not get their refund replayed."""
    payment = paid_payment()
    refund(staff_api, payment, {"amount": 1000})
    colleague = UserFactory(username="casey", is_staff=True)
    colleague.user_permissions.set(staff.user_permissions.all())

    response = refund(api_client_for(colleague), payment, {"amount": 1000})

    assert response.status_code == 422
    assert Refund.objects.count() == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_request_still_holding_the_key_gets_409(staff_api, staff, paid_payment, fake_stripe):
    """While the first request is between reserving and Stripe's answer, the same key gets 409."""
    payment = paid_payment()
    refund_reserve(payment=payment, amount=1000, created_by=staff, idempotency_key="refund-1")

    response = refund(staff_api, payment, {"amount": 1000})

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert fake_stripe.list("refunds") == []
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_once_the_lease_expires_the_same_key_resumes_the_same_refund(staff_api, staff, paid_payment, fake_stripe):
    """A request that died after reserving is finished by the client's retry with its key."""
    payment = paid_payment()
    reserved, _ = refund_reserve(payment=payment, amount=1000, created_by=staff, idempotency_key="refund-1")
    Refund.objects.filter(pk=reserved.pk).update(stripe_call_started_at=timezone.now() - timedelta(minutes=5))

    response = refund(staff_api, payment, {"amount": 1000})

    assert response.status_code == 201
    assert response.json()["id"] == str(reserved.id)
    assert response.json()["status"] == "succeeded"
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_payment_whose_dispute_was_lost_is_409(staff_api, paid_payment, fake_stripe):
    payment = paid_payment()
    Dispute.objects.create(stripe_dispute_id="dp_1", payment=payment, amount=payment.amount, status=Dispute.Status.LOST)

    response = refund(staff_api, payment, {"amount": 1000})

    assert response.status_code == 409
    assert response.json()["code"] == "not_refundable"
    assert "dispute" in response.json()["detail"]
    assert fake_stripe.list("refunds") == []
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_a_payment_with_an_open_dispute_can_still_be_refunded(staff_api, paid_payment, fake_stripe):
    payment = paid_payment()
    Dispute.objects.create(stripe_dispute_id="dp_1", payment=payment, amount=payment.amount, status="needs_response")

    assert refund(staff_api, payment, {"amount": 1000}).status_code == 201
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_fully_refunded_payment_is_409(staff_api, paid_payment, fake_stripe):
    payment = paid_payment()
    refund(staff_api, payment, key="all")

    response = refund(staff_api, payment, {"amount": 100}, key="more")

    assert response.status_code == 409
    assert response.json()["code"] == "not_refundable"
    assert len(fake_stripe.list("refunds")) == 1
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_refund_that_fails_later_takes_its_amount_back(staff_api, paid_payment, fake_stripe):
    """Stripe's later news (a webhook) that a succeeded refund failed moves the payment back."""
    payment = paid_payment(amount=9000)
    for n in range(3):
        refund(staff_api, payment, {"amount": 3000}, key=f"part-{n}")
    assert_refund_invariants(payment)
    assert payment.status == Payment.Status.REFUNDED
    [made, *_] = fake_stripe.list("refunds")

    refund_record_stripe_refund(stripe_refund={**made, "status": "failed", "failure_reason": "lost_or_stolen_card"})

    assert_refund_invariants(payment)
    assert payment.refunded_amount == 6000
    assert payment.status == Payment.Status.PARTIALLY_REFUNDED
    assert refund(staff_api, payment, key="rest").json()["amount"] == 3000
