"""
GET /api/payments/{id}/refunds/: a payment's refunds for its owner (without the
support desk's note and who refunded) and for staff holding refunds.view_refund
(with them); a 404 for anyone else, staff without that permission included.
"""

import uuid

import pytest
from django.contrib.auth.models import Permission

from payments.tests.factories import UserFactory, api_client_for
from refunds.tests.factories import PaidPaymentFactory, RefundFactory

PUBLIC_FIELDS = {"id", "payment", "stripe_refund_id", "amount", "status", "reason", "failure_reason", "created_at"}
STAFF_FIELDS = PUBLIC_FIELDS | {"note", "created_by"}


def listed(client, payment_id):
    return client.get(f"/api/payments/{payment_id}/refunds/")


def staff_member(username, *codenames):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="refunds", codename__in=codenames))
    return user


@pytest.fixture
def payment(owner):
    payment = PaidPaymentFactory(user=owner, amount=10_000)
    desk = UserFactory(username="desk", is_staff=True)
    RefundFactory(payment=payment, amount=1000, note="first: customer is a known fraudster", created_by=desk)
    RefundFactory(payment=payment, amount=2000, note="second: goodwill, ticket 7", created_by=desk)
    RefundFactory(amount=500)  # someone else's
    return payment


@pytest.mark.django_db
def test_the_owner_sees_the_refunds_newest_first_without_staff_notes(owner_api, payment):
    response = listed(owner_api, payment.id)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [r["amount"] for r in body["results"]] == [2000, 1000]
    assert all(set(refund) == PUBLIC_FIELDS for refund in body["results"])
    assert {r["payment"] for r in body["results"]} == {str(payment.id)}
    assert "fraudster" not in response.content.decode() and "desk" not in response.content.decode()


@pytest.mark.django_db
def test_staff_holding_view_refund_see_the_notes_and_who_refunded(payment):
    viewer = staff_member("vera", "view_refund")

    body = listed(api_client_for(viewer), payment.id).json()

    assert all(set(refund) == STAFF_FIELDS for refund in body["results"])
    notes = [r["note"] for r in body["results"]]
    assert notes == ["second: goodwill, ticket 7", "first: customer is a known fraudster"]
    assert {r["created_by"] for r in body["results"]} == {"desk"}


@pytest.mark.django_db
@pytest.mark.parametrize("codenames", [(), ("add_refund",), ("change_refund", "delete_refund")])
def test_staff_without_view_refund_see_no_refunds_of_others(payment, codenames):
    """Being staff, or allowed to refund, is not being allowed to read the desk's refunds."""
    clerk = staff_member("clerk", *codenames)

    response = listed(api_client_for(clerk), payment.id)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_the_owner_who_is_staff_without_view_refund_still_gets_no_notes(payment, owner, owner_api):
    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(Permission.objects.get(codename="add_refund"))

    body = listed(owner_api, payment.id).json()

    assert all(set(refund) == PUBLIC_FIELDS for refund in body["results"])


@pytest.mark.django_db
def test_a_refund_made_through_the_api_is_answered_with_its_note_only_to_staff_who_may_view_it(
    payment, paid_payment, fake_stripe, staff, staff_api
):
    """The POST's answer follows the same rule as the list."""
    paid = paid_payment(amount=5000)
    body = {"amount": 100, "note": "internal only"}

    refunder = staff_api.post(f"/api/payments/{paid.id}/refunds/", body, HTTP_IDEMPOTENCY_KEY="a")
    staff.user_permissions.add(Permission.objects.get(codename="view_refund"))
    viewer = api_client_for(staff).post(f"/api/payments/{paid.id}/refunds/", body, HTTP_IDEMPOTENCY_KEY="b")

    assert refunder.status_code == viewer.status_code == 201
    assert set(refunder.json()) == PUBLIC_FIELDS
    assert viewer.json()["note"] == "internal only" and viewer.json()["created_by"] == staff.username


@pytest.mark.django_db
def test_anyone_else_gets_404(outsider_api, payment):
    assert listed(outsider_api, payment.id).status_code == 404


@pytest.mark.django_db
def test_a_payment_that_does_not_exist_is_404(staff_api):
    assert listed(staff_api, uuid.uuid4()).status_code == 404


@pytest.mark.django_db
def test_anonymous_gets_nothing(client, payment):
    response = listed(client, payment.id)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
