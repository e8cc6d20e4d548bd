"""
POST /api/payments/ in as few statements as its guarantees allow: the row
committed by one INSERT before Stripe is called, Stripe's answer recorded by one
compare-and-set UPDATE; the locked path when someone else wrote the row meanwhile.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from notifications.outbox import WATCHED
from payments import services
from payments.models import Payment
from payments.tests.factories import api_client_for

URL = "/api/payments/"
BODY = {"amount": 2000, "currency": "usd", "description": "Order 42"}


def create(client, key="key-1"):
    return client.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db(transaction=True)
def test_a_creation_is_the_token_one_insert_and_one_update(owner, fake_stripe):
    """Outside any transaction: no savepoint, no transaction of our own, no row lock; the row ends recorded."""
    client = api_client_for(owner)

    with CaptureQueriesContext(connection) as queries:
        response = create(client)

    assert response.status_code == 201
    statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    assert statements == ["SELECT", "INSERT", "UPDATE"]
    assert 'FROM "authtoken_token"' in queries.captured_queries[0]["sql"]
    assert not any("FOR UPDATE" in query["sql"] for query in queries.captured_queries)
    payment = Payment.objects.get()
    assert payment.stripe_payment_intent_id == response.json()["stripe_payment_intent_id"]
    assert payment.client_secret == response.json()["client_secret"]
    assert payment.stripe_call_started_at is None
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD


@pytest.mark.django_db(transaction=True)
def test_news_recorded_during_the_stripe_call_is_kept(owner, fake_stripe, monkeypatch):
    """
    A webhook records the PaymentIntent (further along) while our create waits for
    Stripe's answer: the compare-and-set finds the row changed, the locked path
    records the answer, and the newer status stays.
    """
    create_at_stripe = stripe_gateway.payment_intent_create

    def create_then_webhook(**params):
        intent = create_at_stripe(**params)
        with transaction.atomic():
            payment = Payment.objects.select_for_update().get(pk=params["metadata"]["payment_id"])
            services.payment_record_intent(
                payment=payment, intent={**intent, "status": "processing"}, at=timezone.now()
            )
        return intent

    monkeypatch.setattr(stripe_gateway, "payment_intent_create", create_then_webhook)
    client = api_client_for(owner)

    with CaptureQueriesContext(connection) as queries:
        response = create(client)

    assert response.status_code == 201
    assert response.json()["status"] == "processing"
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PROCESSING
    assert payment.client_secret == response.json()["client_secret"]
    assert payment.stripe_call_started_at is None
    # The compare-and-set wrote nothing; the locked path did.
    assert any("FOR UPDATE" in query["sql"] for query in queries.captured_queries)


def test_the_unlocked_fields_make_no_notification():
    """What the compare-and-set writes without the save signals is nothing the outbox watches."""
    assert not services.CREATE_ANSWER_FIELDS & set(WATCHED[Payment])


@pytest.mark.django_db
def test_the_payment_serializers_build_their_fields_once(monkeypatch):
    """ModelSerializer's field building runs once per class; every instance still gets fields of its own."""
    from rest_framework import serializers

    from payments.api import PaymentCreatedSerializer, PaymentSerializer

    built = []
    build = serializers.ModelSerializer.get_fields
    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", lambda self: built.append(1) or build(self))
    for cls in (PaymentSerializer, PaymentCreatedSerializer):
        monkeypatch.delattr(cls, "_built_fields", raising=False)

    first, second = PaymentCreatedSerializer(), PaymentCreatedSerializer()
    assert list(first.fields) == list(second.fields)
    assert "client_secret" in first.fields and "client_secret" not in PaymentSerializer().fields
    assert first.fields["amount"] is not second.fields["amount"]
    assert len(built) == 2  # once for each class
