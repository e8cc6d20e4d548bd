"""POST /api/payments/{id}/refunds/: the exact answer to each bad input and to everyone not allowed to refund."""

import uuid

import pytest
from django.contrib.auth.models import Permission

from payments.models import Payment
from payments.tests.factories import UserFactory, api_client_for
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory
from refunds.tests.factories import request_refund as refund
from refunds.tests.invariants import assert_refund_invariants


def invalid(errors):
    """The answer to bad input: each field's errors under `errors`, each with its code."""
    return {"detail": "The request is not valid: see `errors`.", "code": "invalid", "errors": errors}


@pytest.fixture
def payment(owner):
    """A paid payment; these answers come before any Stripe call, so none is made at Stripe."""
    return PaidPaymentFactory(user=owner, amount=10_000)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "amount, message, code",
    [
        (-100, "Ensure this value is greater than or equal to 1.", "min_value"),
        (0, "Ensure this value is greater than or equal to 1.", "min_value"),
        (12.5, "A whole number of minor units is required (e.g. 2000 for $20.00).", "invalid"),
        (1000.0, "A whole number of minor units is required (e.g. 2000 for $20.00).", "invalid"),
        ("1000", "A whole number of minor units is required (e.g. 2000 for $20.00).", "invalid"),
        (True, "A whole number of minor units is required (e.g. 2000 for $20.00).", "invalid"),
        (None, "This field may not be null.", "null"),
    ],
)
def test_an_amount_that_is_not_a_positive_integer_is_400(staff_api, payment, amount, message, code):
    response = refund(staff_api, payment.id, {"amount": amount})

    assert response.status_code == 400
    assert response.json() == invalid({"amount": [{"message": message, "code": code}]})
    assert not Refund.objects.exists()
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_an_amount_above_what_is_left_is_400_saying_how_much_is_left(staff_api, payment):
    """Pending refunds count: 3000 succeeded and 2000 under way leave 5000."""
    Refund.objects.create(payment=payment, amount=3000, status=Refund.Status.SUCCEEDED, stripe_refund_id="re_1")
    Refund.objects.create(payment=payment, amount=2000, status=Refund.Status.PENDING, idempotency_key="other")
    Payment.objects.filter(pk=payment.pk).update(refunded_amount=3000, status=Payment.Status.PARTIALLY_REFUNDED)

    response = refund(staff_api, payment.id, {"amount": 5001})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The amount exceeds what is left to refund: $50.00 (5000) is left.",
        "code": "refund_amount_invalid",
        "refundable_amount": 5000,
    }
    assert Refund.objects.count() == 2
    assert_refund_invariants(payment)


@pytest.mark.django_db
def test_an_unknown_reason_is_400(staff_api, payment):
    response = refund(staff_api, payment.id, {"amount": 100, "reason": "changed_my_mind"})

    assert response.status_code == 400
    assert response.json() == invalid(
        {"reason": [{"message": '"changed_my_mind" is not a valid choice.', "code": "invalid_choice"}]}
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key, message, code",
    [(None, "This header is required.", "required"), ("k" * 256, "At most 255 characters.", "max_length")],
)
def test_a_missing_or_bad_idempotency_key_is_400(staff_api, payment, key, message, code):
    response = refund(staff_api, payment.id, {"amount": 100}, key=key)

    assert response.status_code == 400
    assert response.json() == invalid({"Idempotency-Key": [{"message": message, "code": code}]})
    assert not Refund.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status",
    [
        Payment.Status.REQUIRES_PAYMENT_METHOD,
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.PROCESSING,
        Payment.Status.REQUIRES_CAPTURE,
        Payment.Status.FAILED,
        Payment.Status.CANCELED,
    ],
)
def test_a_payment_that_was_not_paid_is_409(staff_api, owner, status):
    payment = PaidPaymentFactory(user=owner, status=status)

    response = refund(staff_api, payment.id, {"amount": 100})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"A payment that is {status} cannot be refunded.",
        "code": "not_refundable",
    }
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_a_payment_that_does_not_exist_is_404_for_staff(staff_api):
    response = refund(staff_api, uuid.uuid4(), {"amount": 100})

    assert response.status_code == 404
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_the_owner_cannot_refund_their_own_payment(owner_api, payment):
    response = refund(owner_api, payment.id, {"amount": 100})

    assert response.status_code == 403
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_a_user_cannot_refund_someone_elses_payment(outsider_api, payment):
    response = refund(outsider_api, payment.id, {"amount": 100})

    assert response.status_code == 403
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_a_non_staff_user_gets_403_not_404_for_a_missing_payment(outsider_api):
    """Only staff learn whether a payment exists."""
    assert refund(outsider_api, uuid.uuid4(), {"amount": 100}).status_code == 403


@pytest.mark.django_db
def test_staff_without_the_refund_permission_get_403(payment):
    clerk = UserFactory(username="clerk", is_staff=True)

    response = refund(api_client_for(clerk), payment.id, {"amount": 100})

    assert response.status_code == 403
    assert response.json()["detail"] == "Only staff allowed to refund (refunds.add_refund) may issue refunds."
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_the_permission_without_staff_status_is_403(payment):
    """The permission alone is not enough: refunds are a back-office act."""
    user = UserFactory(username="former-staff")
    user.user_permissions.add(Permission.objects.get(codename="add_refund", content_type__app_label="refunds"))

    assert refund(api_client_for(user), payment.id, {"amount": 100}).status_code == 403
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_anonymous_cannot_refund(client, payment):
    response = client.post(
        f"/api/payments/{payment.id}/refunds/", {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code in (401, 403)
    assert not Refund.objects.exists()
