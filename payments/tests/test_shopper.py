"""
The shopper and the storefront's order on `POST /api/payments/`: order_reference,
customer_email (Stripe's receipt_email) and customer_name are checked, stored,
answered and searchable; the card's brand and last 4 come from the charge.
"""

import pytest
from django.db import connection

import core.stripe_gateway as stripe_gateway
from core.idempotency import request_fingerprint
from payments.models import Payment
from payments.tests.factories import PaymentFactory

SHOPPER = {"order_reference": "ORDER-1001", "customer_email": "ana@example.com", "customer_name": "Ana Lima"}


def create(client, key="order-1001", **body):
    body = {"amount": 2400, "currency": "usd", **body}
    return client.post("/api/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_the_shopper_is_stored_answered_and_the_email_goes_to_stripe_for_the_receipt(owner_api, fake_stripe):
    response = create(owner_api, description="Coffee beans", **SHOPPER)

    assert response.status_code == 201
    body = response.json()
    assert {name: body[name] for name in SHOPPER} == SHOPPER
    payment = Payment.objects.get()
    assert (payment.order_reference, payment.customer_email, payment.customer_name) == tuple(SHOPPER.values())
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert (intent["receipt_email"], intent["description"]) == ("ana@example.com", "Coffee beans")


@pytest.mark.django_db
def test_without_a_shopper_nothing_is_sent_for_a_receipt(owner_api, fake_stripe):
    body = create(owner_api).json()
    assert (body["order_reference"], body["customer_email"], body["customer_name"]) == ("", "", "")
    assert stripe_gateway.payment_intent_retrieve(body["stripe_payment_intent_id"])["receipt_email"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [
        {"customer_email": "not-an-email"},
        {"customer_email": "a@" + "b" * 260 + ".com"},
        {"customer_name": "x" * 256},
        {"order_reference": "x" * 256},
        {"order_reference": "ORDER\n1001"},
        {"capture_method": "later"},
    ],
)
def test_bad_shopper_fields_are_400_and_nothing_is_written(owner_api, fake_stripe, bad):
    response = create(owner_api, **bad)

    assert response.status_code == 400
    # The field is named in the answer, however field errors are laid out.
    assert next(iter(bad)) in response.content.decode()
    assert not Payment.objects.exists()
    assert fake_stripe.list("payment_intents") == []


@pytest.mark.django_db
def test_the_same_key_with_another_shopper_is_422_and_with_the_same_replays(owner_api, fake_stripe):
    first = create(owner_api, **SHOPPER)
    again = create(owner_api, **SHOPPER)
    other = create(owner_api, **{**SHOPPER, "customer_email": "bob@example.com"})

    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 422


@pytest.mark.django_db
def test_a_payment_stored_before_the_shopper_fields_still_replays(owner, owner_api, fake_stripe):
    """Its fingerprint was taken without them: the same body under its key is still the same request."""
    old_body = {"amount": 2400, "currency": "usd", "description": "", "metadata": {}}
    stored = PaymentFactory(user=owner, idempotency_key="old-1", request_fingerprint=request_fingerprint(old_body))

    response = create(owner_api, key="old-1")

    assert response.status_code == 201 and response["Idempotent-Replayed"] == "true"
    assert response.json()["id"] == str(stored.id)


@pytest.mark.django_db
def test_the_owner_finds_payments_by_order_reference(owner, outsider, owner_api):
    wanted = PaymentFactory(user=owner, order_reference="ORDER-1001")
    PaymentFactory(user=owner, order_reference="ORDER-1002")
    PaymentFactory(user=outsider, order_reference="ORDER-1001")

    results = owner_api.get("/api/payments/", {"order_reference": "ORDER-1001"}).json()["results"]

    assert [p["id"] for p in results] == [str(wanted.id)]


@pytest.mark.django_db
def test_the_card_brand_and_last_4_come_from_the_charge(owner_api, fake_stripe):
    payment_id = create(owner_api).json()["id"]

    response = owner_api.post(f"/api/payments/{payment_id}/confirm/", {"payment_method": "pm_card_visa"}, format="json")

    assert response.status_code == 200
    assert (response.json()["card_brand"], response.json()["card_last4"]) == ("visa", "4242")
    assert Payment.objects.filter(card_last4="4242", card_brand="visa").count() == 1


@pytest.mark.django_db
def test_searches_by_the_shopper_use_their_indexes():
    """Exact order reference, the email in any case (UPPER), the last 4: each an index lookup, never a scan."""
    PaymentFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plans = [
            Payment.objects.filter(order_reference="ORDER-1").explain(),
            Payment.objects.filter(customer_email__iexact="Ana@Example.com").explain(),
            Payment.objects.filter(card_last4="4242").explain(),
        ]
    for plan, index in zip(
        plans, ("payment_order_reference", "payment_customer_email_upper", "payment_card_last4"), strict=True
    ):
        assert index in plan, plan
