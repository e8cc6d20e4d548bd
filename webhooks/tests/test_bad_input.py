"""POST /webhooks/stripe/: anything not signed by Stripe with our secret, or not an event, is 400 and stores nothing."""

import json
import time

import pytest
from django.db import connection
from django.test import Client

from payments.models import Payment
from webhooks.models import WebhookEvent
from webhooks.tests.factories import (
    dispute_object,
    payment_intent_event,
    post_event,
    refund_object,
    sign,
    stripe_event,
)


@pytest.fixture
def event():
    return payment_intent_event("payment_intent.succeeded", intent_id="pi_bad_input")


def assert_refused(response):
    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0
    assert Payment.objects.count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_jobs")
        assert cursor.fetchone() == (0,), "a refused event queued a job"


@pytest.mark.django_db
def test_a_missing_signature_is_refused(client, event):
    assert_refused(post_event(client, event, signature=""))


@pytest.mark.django_db
def test_a_signature_made_with_another_secret_is_refused(client, event):
    assert_refused(post_event(client, event, secret="whsec_someone_else"))


@pytest.mark.django_db
def test_a_signature_older_than_five_minutes_is_refused(client, event):
    assert_refused(post_event(client, event, timestamp=int(time.time()) - 301))


@pytest.mark.django_db
def test_a_signature_within_five_minutes_is_accepted(client, event):
    """The other side of the tolerance: Stripe's clock and delivery may lag a little."""
    assert post_event(client, event, timestamp=int(time.time()) - 240).status_code == 200


@pytest.mark.django_db
def test_a_body_changed_after_signing_is_refused(client, event):
    body = json.dumps(event)
    signature = sign(body)
    tampered = body.replace('"amount": 2000', '"amount": 1')
    assert tampered != body
    assert_refused(post_event(client, tampered, signature=signature))


@pytest.mark.django_db
def test_a_malformed_signature_header_is_refused(client, event):
    assert_refused(post_event(client, event, signature="t=notanumber,v1=zz"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"id": "evt_1", "type": "payment_intent.succeeded", "created": 1}),
        json.dumps({"id": "evt_1", "created": 1, "data": {"object": {}}}),
        json.dumps({"type": "payment_intent.succeeded", "created": 1, "data": {"object": {}}}),
        json.dumps({"id": "evt_1", "type": "x", "data": {"object": {}}}),
        json.dumps({"id": "evt_" + "9" * 300, "type": "x", "created": 1, "data": {"object": {}}}),
    ],
    ids=["not-json", "not-an-object", "no-data", "no-type", "no-id", "no-created", "id-too-long"],
)
def test_a_signed_body_that_is_not_an_event_is_refused(client, body):
    assert_refused(post_event(client, body))


@pytest.mark.django_db
def test_a_body_that_is_not_utf8_is_refused(client):
    body = b'{"id": "evt_\xff"}'
    response = client.post(
        "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00"
    )
    assert_refused(response)


@pytest.mark.django_db
def test_every_webhook_is_refused_while_no_secret_is_set(client, event, settings):
    body = json.dumps(event)
    signature = sign(body, secret="whsec_paymentsite_tests")
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert_refused(post_event(client, body, signature=signature))


@pytest.mark.django_db
def test_the_endpoint_needs_no_csrf_token_and_no_login(event):
    client = Client(enforce_csrf_checks=True)
    response = post_event(client, event)
    assert response.status_code == 200
    assert response.json() == {"received": True}


@pytest.mark.django_db
def test_only_post_is_allowed(client):
    assert client.get("/webhooks/stripe/").status_code == 405


# --- Hostile bodies: whatever arrives, a 4xx and nothing stored ---------------


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_refused(client, event, settings):
    """A signed event padded past DATA_UPLOAD_MAX_MEMORY_SIZE is never read into memory, let alone stored."""
    event["data"]["object"]["description"] = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    assert_refused(post_event(client, event))


@pytest.mark.django_db
def test_a_truncated_body_is_refused(client, event):
    body = json.dumps(event)

    assert_refused(post_event(client, body[: len(body) // 2]))


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "latin-1"])
def test_a_body_in_another_encoding_is_refused(client, event, encoding):
    """Stripe signs UTF-8; the same text in another encoding is not what was signed."""
    event["data"]["object"]["description"] = "Crème brûlée"
    text = json.dumps(event, ensure_ascii=False)
    response = client.post(
        "/webhooks/stripe/",
        data=text.encode(encoding),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(text),
    )

    assert_refused(response)


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["nul \\u0000 inside", "lone \\ud800 surrogate"], ids=["nul", "lone-surrogate"])
def test_a_signed_event_with_a_string_postgresql_cannot_store_is_refused(client, event, text):
    body = json.dumps(event).replace('"pi_bad_input"', '"pi_bad_input", "description": "' + text + '"', 1)

    assert_refused(post_event(client, body))


def _malformed(event: dict, **changes) -> dict:
    event["data"]["object"].update(changes)
    for name, value in changes.items():
        if value is ...:
            del event["data"]["object"][name]
    return event


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_event",
    [
        lambda: _malformed(payment_intent_event("payment_intent.succeeded"), amount="2000"),
        lambda: _malformed(payment_intent_event("payment_intent.succeeded"), amount=True),
        lambda: _malformed(payment_intent_event("payment_intent.succeeded"), id=...),
        lambda: _malformed(payment_intent_event("payment_intent.canceled"), status=None),
        lambda: _malformed(payment_intent_event("payment_intent.created"), currency=840),
        lambda: stripe_event("refund.created", {**refund_object(intent_id="pi_x"), "amount": 12.5}),
        lambda: stripe_event("refund.failed", {**refund_object(intent_id="pi_x"), "status": ["failed"]}),
        lambda: stripe_event("charge.refunded", {"object": "charge", "id": ""}),
        lambda: stripe_event("charge.dispute.created", {**dispute_object(intent_id="pi_x"), "amount": None}),
    ],
    ids=[
        "intent-amount-string",
        "intent-amount-bool",
        "intent-no-id",
        "intent-status-null",
        "intent-currency-number",
        "refund-amount-float",
        "refund-status-list",
        "charge-empty-id",
        "dispute-amount-null",
    ],
)
def test_a_validly_signed_event_with_a_malformed_object_is_refused(client, make_event):
    """Malformed objects are a 400 up front, not a stored failure that Stripe would retry for three days."""
    assert_refused(post_event(client, make_event()))
