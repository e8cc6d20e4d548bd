"""GET /api/payments/ and /api/payments/{id}/: a user sees only their own payments."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import Payment
from payments.tests.factories import PaymentFactory


@pytest.fixture
def three_payments(owner):
    now = timezone.now()
    return [
        PaymentFactory(user=owner, created_at=now - timedelta(minutes=2), status=Payment.Status.SUCCEEDED),
        PaymentFactory(user=owner, created_at=now - timedelta(minutes=1)),
        PaymentFactory(user=owner, created_at=now, status=Payment.Status.SUCCEEDED),
    ]


@pytest.mark.django_db
def test_list_shows_own_payments_newest_first(owner_api, outsider, three_payments):
    PaymentFactory(user=outsider)

    response = owner_api.get("/api/payments/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [p["id"] for p in body["results"]] == [str(p.id) for p in reversed(three_payments)]
    assert "client_secret" not in body["results"][0]


@pytest.mark.django_db
def test_list_filters_by_status(owner_api, three_payments):
    response = owner_api.get("/api/payments/", {"status": "succeeded"})

    assert [p["id"] for p in response.json()["results"]] == [str(three_payments[2].id), str(three_payments[0].id)]


@pytest.mark.django_db
def test_list_rejects_an_unknown_status(owner_api):
    response = owner_api.get("/api/payments/", {"status": "paid"})

    assert response.status_code == 400
    assert response.json()["errors"]["status"][0]["code"] == "invalid_choice"


@pytest.mark.django_db
def test_list_is_paginated(owner_api, owner, settings):
    PaymentFactory.create_batch(51, user=owner)

    first = owner_api.get("/api/payments/").json()
    second = owner_api.get(first["next"]).json()

    assert first["count"] == 51
    assert len(first["results"]) == 50 and len(second["results"]) == 1


@pytest.mark.django_db
def test_owner_reads_a_payment(owner_api, three_payments):
    payment = three_payments[0]

    response = owner_api.get(f"/api/payments/{payment.id}/")

    assert response.status_code == 200
    # The contract's "A payment in answers", no more (no client_secret, no internal fields).
    assert set(response.json()) == {
        "id",
        "stripe_payment_intent_id",
        "amount",
        "currency",
        "status",
        "capture_method",
        "amount_capturable",
        "amount_received",
        "capture_before",
        "refunded_amount",
        "order_reference",
        "customer_email",
        "customer_name",
        "card_brand",
        "card_last4",
        "description",
        "metadata",
        "failure_code",
        "failure_message",
        "dispute_status",
        "amount_lost_to_disputes",
        "created_at",
        "updated_at",
    }
    assert response.json()["status"] == "succeeded"


@pytest.mark.django_db
def test_someone_elses_payment_is_404_not_403(outsider_api, three_payments):
    assert outsider_api.get(f"/api/payments/{three_payments[0].id}/").status_code == 404


@pytest.mark.django_db
def test_unknown_payment_is_404(owner_api):
    assert owner_api.get(f"/api/payments/{uuid.uuid4()}/").status_code == 404
    assert owner_api.get("/api/payments/not-a-uuid/").status_code == 404


@pytest.mark.django_db
def test_anonymous_reads_nothing(client, three_payments):
    assert client.get("/api/payments/").status_code in (401, 403)
    assert client.get(f"/api/payments/{three_payments[0].id}/").status_code in (401, 403)


@pytest.mark.django_db
def test_session_authentication_works(client, owner, three_payments):
    client.force_login(owner)

    assert client.get("/api/payments/").json()["count"] == 3


@pytest.mark.django_db
def test_a_malformed_payment_id_is_a_json_404(owner_api):
    """Paths under /api/ that match no route answer JSON, like every other API error."""
    response = owner_api.get("/api/payments/not-a-uuid/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_outside_the_api_a_404_is_a_page(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
