"""POST /api/payments/: creation, idempotency, bad input and Stripe failures."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from payments.models import Payment

URL = "/api/payments/"
BODY = {"amount": 2000, "currency": "usd", "description": "Order 42", "metadata": {"order": "42"}}


def create(client, body=BODY, key="key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(URL, body, format="json", **headers)


def intents_at_stripe(fake_stripe):
    return fake_stripe.list("payment_intents")


@pytest.mark.django_db
def test_create_makes_one_payment_intent_carrying_our_id(owner_api, owner, fake_stripe):
    """A payment is written, its PaymentIntent made, and our id travels in its metadata."""
    response = create(owner_api)

    assert response.status_code == 201
    body = response.json()
    payment = Payment.objects.get()
    assert body["id"] == str(payment.id)
    assert body["amount"] == 2000 and body["currency"] == "usd"
    assert body["status"] == "requires_payment_method"
    assert body["refunded_amount"] == 0
    assert body["description"] == "Order 42" and body["metadata"] == {"order": "42"}
    assert body["client_secret"].startswith(body["stripe_payment_intent_id"])
    assert "Idempotent-Replayed" not in response.headers
    assert payment.user == owner
    [intent] = intents_at_stripe(fake_stripe)
    assert intent["id"] == payment.stripe_payment_intent_id
    assert intent["amount"] == 2000
    assert intent["metadata"] == {"order": "42", "payment_id": str(payment.id)}


@pytest.mark.django_db
def test_the_description_is_sent_to_stripe_as_real_stripe_takes_it(owner_api, fake_stripe):
    """The PaymentIntent carries the payment's description (real Stripe shows it on receipts and the dashboard)."""
    response = create(owner_api)

    assert response.status_code == 201
    [intent] = intents_at_stripe(fake_stripe)
    assert intent["id"] == response.json()["stripe_payment_intent_id"]
    assert intent["description"] == "Order 42"


@pytest.mark.django_db
def test_same_key_same_body_replays_without_a_second_payment_intent(owner_api, fake_stripe):
    first = create(owner_api)
    again = create(owner_api)

    assert again.status_code == first.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Payment.objects.count() == 1
    assert len(intents_at_stripe(fake_stripe)) == 1


@pytest.mark.django_db
def test_same_key_different_body_is_422_and_creates_nothing(owner_api, fake_stripe):
    create(owner_api)
    response = create(owner_api, body={**BODY, "amount": 2500})

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.count() == 1
    assert len(intents_at_stripe(fake_stripe)) == 1


@pytest.mark.django_db
def test_keys_are_per_user(owner_api, outsider_api, fake_stripe):
    """Two users may use the same key: each gets their own payment."""
    mine = create(owner_api)
    theirs = create(outsider_api)

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key, message, code",
    [
        (None, "This header is required.", "required"),
        ("", "This header is required.", "required"),
        ("k" * 256, "At most 255 characters.", "max_length"),
    ],
)
def test_missing_or_bad_idempotency_key_is_400(owner_api, fake_stripe, key, message, code):
    response = create(owner_api, key=key)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request is not valid: see `errors`.",
        "code": "invalid",
        "errors": {"Idempotency-Key": [{"message": message, "code": code}]},
    }
    assert not Payment.objects.exists()
    assert intents_at_stripe(fake_stripe) == []


@pytest.mark.django_db
def test_longest_key_is_accepted(owner_api, fake_stripe):
    assert create(owner_api, key="k" * 255).status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, field, code",
    [
        ({"amount": "2000"}, "amount", "invalid"),
        ({"amount": 20.5}, "amount", "invalid"),
        ({"amount": 2000.0}, "amount", "invalid"),
        ({"amount": True}, "amount", "invalid"),
        ({"amount": None}, "amount", "null"),
        ({"amount": 49}, "amount", "min_value"),
        ({"amount": -100}, "amount", "min_value"),
        ({"amount": 100_000_000}, "amount", "max_value"),
        ({"currency": "gbp", "amount": 29}, "amount", "min_value"),
        ({"currency": "jpy", "amount": 49}, "amount", "min_value"),
        ({"currency": "xyz"}, "currency", "invalid_choice"),
        ({"currency": ""}, "currency", "invalid_choice"),
        ({"currency": 840}, "currency", "invalid_choice"),
        ({"metadata": {"order": 42}}, "metadata", "value_not_a_string"),
        ({"metadata": {"nested": {"a": "b"}}}, "metadata", "value_not_a_string"),
        ({"metadata": ["a"]}, "metadata", "not_an_object"),
        ({"metadata": {"payment_id": "forged"}}, "metadata", "reserved_key"),
        ({"description": "x" * 1001}, "description", "max_length"),
    ],
)
def test_bad_input_is_400_with_field_errors_and_writes_nothing(owner_api, fake_stripe, change, field, code):
    """Each field's errors come under `errors`, each with its message and a stable code."""
    response = create(owner_api, body={**BODY, **change})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert [error["code"] for error in body["errors"][field]] == [code]
    assert all(error["message"] for error in body["errors"][field])
    assert not Payment.objects.exists()
    assert intents_at_stripe(fake_stripe) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw_body",
    [
        '{"amount": 2000, "currency": "usd", "metadata": {"k\\u0000": "v"}}',
        '{"amount": 2000, "currency": "usd", "description": "a\\u0000b"}',
        '{"amount": 2000, "currency": "usd", "description": "lone \\ud800 surrogate"}',
        '{"amount": 2000, "currency": "usd", "metadata": {"k": "\\udc00"}}',
    ],
)
def test_strings_postgresql_cannot_store_are_400_not_500(owner_api, fake_stripe, raw_body):
    """Valid JSON, but a NUL or a lone surrogate is no valid PostgreSQL text: refused before anything is written."""
    response = owner_api.post(URL, raw_body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="nul-1")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert response.json()["code"] == "invalid_character"
    assert not Payment.objects.exists()
    assert intents_at_stripe(fake_stripe) == []


@pytest.mark.django_db
def test_a_form_encoded_body_is_415(owner_api, fake_stripe):
    response = owner_api.post(
        URL, "amount=2000&currency=usd", content_type="application/x-www-form-urlencoded", HTTP_IDEMPOTENCY_KEY="form-1"
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_missing_amount_is_400(owner_api, fake_stripe):
    response = create(owner_api, body={"currency": "usd"})

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == [{"message": "This field is required.", "code": "required"}]


@pytest.mark.django_db
@pytest.mark.parametrize("currency, amount", [("usd", 50), ("gbp", 30), ("jpy", 50), ("USD", 99_999_999)])
def test_boundary_amounts_are_accepted(owner_api, fake_stripe, currency, amount):
    response = create(owner_api, body={"amount": amount, "currency": currency})

    assert response.status_code == 201
    assert response.json()["amount"] == amount
    assert response.json()["currency"] == currency.lower()


@pytest.mark.django_db
def test_anonymous_cannot_create(client, fake_stripe):
    response = client.post(URL, BODY, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code in (401, 403)
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_stripe_500_then_retry_makes_exactly_one_payment_intent(owner_api, fake_stripe):
    """A Stripe outage answers 502; the retry with the same key resumes the same payment."""
    fake_stripe.add_fault("error500", method="POST", path="^/v1/payment_intents$", times=1)

    failed = create(owner_api)
    assert failed.status_code == 502
    assert "Retry" in failed.json()["detail"]
    payment = Payment.objects.get()
    assert payment.stripe_payment_intent_id is None
    assert intents_at_stripe(fake_stripe) == []

    retried = create(owner_api)
    assert retried.status_code == 201
    assert retried.json()["id"] == str(payment.id)
    assert len(intents_at_stripe(fake_stripe)) == 1


@pytest.mark.django_db
def test_answer_lost_after_stripe_created_it_is_recovered_by_the_retry(owner_api, fake_stripe):
    """Stripe makes the PaymentIntent but the answer is lost: 503, then the retry finds the same one."""
    fake_stripe.add_fault("drop", method="POST", path="^/v1/payment_intents$", times=1)

    failed = create(owner_api)
    assert failed.status_code == 503
    assert len(intents_at_stripe(fake_stripe)) == 1

    retried = create(owner_api)
    assert retried.status_code == 201
    [intent] = intents_at_stripe(fake_stripe)
    assert retried.json()["stripe_payment_intent_id"] == intent["id"]
    assert Payment.objects.get().stripe_payment_intent_id == intent["id"]


@pytest.mark.django_db
def test_stripe_timeout_is_503_and_the_retry_does_not_charge_twice(owner_api, fake_stripe, settings):
    settings.STRIPE_TIMEOUT = 0.5
    fake_stripe.add_fault("hang", method="POST", path="^/v1/payment_intents$", times=1, seconds=1)

    assert create(owner_api).status_code == 503

    # The fake Stripe finishes the hung request a moment later; until then the
    # retry may be told the key is still in use (an ambiguous 502).
    deadline = timezone.now() + timedelta(seconds=10)
    while (retried := create(owner_api)).status_code != 201 and timezone.now() < deadline:
        assert retried.status_code in (502, 503)
    assert retried.status_code == 201
    assert len(intents_at_stripe(fake_stripe)) == 1


@pytest.mark.django_db
def test_a_request_still_holding_the_key_gets_409(owner_api, owner, fake_stripe):
    Payment.objects.create(
        user=owner,
        idempotency_key="key-1",
        amount=2000,
        currency="usd",
        request_fingerprint=_fingerprint_of(BODY),
        stripe_call_started_at=timezone.now(),
    )

    response = create(owner_api)

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert intents_at_stripe(fake_stripe) == []


@pytest.mark.django_db
def test_a_crashed_request_is_taken_over_once_its_lease_expires(owner_api, owner, fake_stripe, settings):
    stale = timezone.now() - timedelta(seconds=settings.PAYMENT_CREATE_LEASE_SECONDS + 1)
    payment = Payment.objects.create(
        user=owner,
        idempotency_key="key-1",
        amount=2000,
        currency="usd",
        description="Order 42",
        metadata={"order": "42"},
        request_fingerprint=_fingerprint_of(BODY),
        stripe_call_started_at=stale,
    )

    response = create(owner_api)

    assert response.status_code == 201
    assert response.json()["id"] == str(payment.id)
    assert len(intents_at_stripe(fake_stripe)) == 1


def _fingerprint_of(body):
    from core.idempotency import request_fingerprint

    return request_fingerprint(body)


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_requests_with_one_key_make_one_payment(owner, fake_stripe):
    """Real concurrency: two threads, two database connections, one key."""
    from payments.tests.factories import api_client_for

    # Keep the first request at Stripe for a moment so the second surely overlaps it.
    fake_stripe.add_fault("hang", method="POST", path="^/v1/payment_intents$", times=1, seconds=1)
    barrier = threading.Barrier(2)
    statuses = []

    def post():
        try:
            client = api_client_for(owner)
            barrier.wait()
            statuses.append(create(client).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 409]
    assert Payment.objects.count() == 1
    assert len(intents_at_stripe(fake_stripe)) == 1


@pytest.mark.django_db
def test_stripe_refusing_our_key_leaves_nothing_behind(owner_api, fake_stripe, settings):
    """Stripe refuses our own key (401): a 502 that is ours, not a retry hint, and no half-made payment."""
    settings.STRIPE_SECRET_KEY = "sk_x"  # localstripe refuses keys this short

    response = create(owner_api, key=str(uuid.uuid4()))

    assert response.status_code == 502
    assert response.json()["code"] == "stripe_refused"
    assert "Stripe refused" in response.json()["detail"]
    assert "retry" not in response.json()["detail"].lower()
    assert not Payment.objects.exists()
