"""
Our rules are Stripe's: metadata is validated to Stripe's documented limits (so
what we accept Stripe accepts), a definite refusal of a create by Stripe is a 400
(never a "retry" 502) and leaves nothing behind, and the Idempotency-Key is read
as UTF-8 and counted in characters.
"""

import pytest

from payments import api as payments_api
from payments.models import Payment
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory

URL = "/api/payments/"


def create(client, metadata=None, key="key-1", **extra):
    body = {"amount": 2000, "currency": "usd", **({"metadata": metadata} if metadata is not None else {})}
    return client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


# --- Metadata ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "metadata, code",
    [
        ({"order[id]": "1"}, "key_characters"),
        ({"order]": "1"}, "key_characters"),
        ({"[": "1"}, "key_characters"),
        ({"k" * 41: "v"}, "key_length"),
        ({"": "v"}, "key_length"),
        ({"k": "v" * 501}, "value_length"),
        ({f"k{n}": "v" for n in range(50)}, "too_many_keys"),
        ({"k": 1}, "value_not_a_string"),
        ({"k": None}, "value_not_a_string"),
        ({"k": True}, "value_not_a_string"),
        ({"k": ["v"]}, "value_not_a_string"),
        ({"k": {"nested": "v"}}, "value_not_a_string"),
        ("a string", "not_an_object"),
        ({"payment_id": "forged"}, "reserved_key"),
    ],
)
def test_metadata_outside_stripes_rules_is_400_with_its_code(owner_api, fake_stripe, metadata, code):
    response = create(owner_api, metadata)

    assert response.status_code == 400
    assert [error["code"] for error in response.json()["errors"]["metadata"]] == [code]
    assert not Payment.objects.exists()
    assert fake_stripe.list("payment_intents") == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "metadata",
    [
        {"k" * 40: "v" * 500},
        {f"k{n}": "v" for n in range(49)},
        {"order id (ü)": "élan", "a.b-c_d:e/f": "x"},
    ],
)
def test_metadata_at_stripes_limits_is_accepted_and_reaches_stripe(owner_api, fake_stripe, metadata):
    response = create(owner_api, metadata)

    assert response.status_code == 201
    [intent] = fake_stripe.list("payment_intents")
    assert {k: v for k, v in intent["metadata"].items() if k != "payment_id"} == metadata


# --- A definite refusal by Stripe ------------------------------------------------------


@pytest.mark.django_db
def test_a_create_stripe_refuses_is_400_not_502_and_writes_nothing(owner_api, fake_stripe, monkeypatch):
    """
    The local Stripe refuses a metadata key with square brackets with a 400
    invalid_request_error: let one through our own rule to see what a refusal
    we did not foresee answers. Nothing can succeed by retrying, so no 502.
    """
    monkeypatch.setattr(payments_api, "METADATA_KEY_FORBIDDEN_CHARACTERS", "")

    response = create(owner_api, {"order[id]": "1"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "stripe_invalid_request"
    assert "retry" not in body["detail"].lower()
    assert not Payment.objects.exists()
    # The refusal freed the key: the corrected request goes through.
    monkeypatch.undo()
    assert create(owner_api, {"order_id": "1"}).status_code == 201


# --- The Idempotency-Key, in UTF-8 -------------------------------------------------------


def as_wsgi_header(text: str) -> str:
    """What a WSGI server hands Django for a header sent as UTF-8: its bytes, read as latin-1 (PEP 3333)."""
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["commande-été-42", "注文-1001", "🧾" * 255, "é" * 255])
def test_a_utf8_key_is_stored_as_written_and_replays(owner_api, fake_stripe, key):
    first = owner_api.post(
        URL, {"amount": 2000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY=as_wsgi_header(key)
    )
    again = owner_api.post(
        URL, {"amount": 2000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY=as_wsgi_header(key)
    )

    assert first.status_code == 201, first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Payment.objects.get().idempotency_key == key


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["é" * 256, "🧾" * 256])
def test_a_key_is_counted_in_characters_not_bytes(owner_api, fake_stripe, key):
    response = owner_api.post(
        URL, {"amount": 2000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY=as_wsgi_header(key)
    )

    assert response.status_code == 400
    assert response.json()["errors"]["Idempotency-Key"][0]["code"] == "max_length"


@pytest.mark.django_db
def test_a_key_that_is_not_utf8_is_a_clear_400(owner_api, fake_stripe):
    latin1 = "café".encode("latin-1").decode("latin-1")  # the byte 0xE9 alone: no UTF-8

    response = owner_api.post(URL, {"amount": 2000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY=latin1)

    assert response.status_code == 400
    assert response.json()["errors"]["Idempotency-Key"] == [{"message": "The header must be UTF-8.", "code": "invalid"}]
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_a_refunds_utf8_key_is_read_the_same_way(staff_api, fake_stripe):
    payment = PaidPaymentFactory(amount=1000)
    key = "remboursement-été"

    response = staff_api.post(
        f"/api/payments/{payment.id}/refunds/", {"amount": 5000}, HTTP_IDEMPOTENCY_KEY=as_wsgi_header("é" * 256)
    )
    assert response.json()["errors"]["Idempotency-Key"][0]["code"] == "max_length"

    # Refused for its amount only after the key was read and found well formed.
    response = staff_api.post(
        f"/api/payments/{payment.id}/refunds/", {"amount": 5000}, HTTP_IDEMPOTENCY_KEY=as_wsgi_header(key)
    )
    assert response.json()["code"] == "refund_amount_invalid"
    assert not Refund.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_utf8_key_over_a_real_socket_is_stored_as_written(live_server, owner, fake_stripe):
    """Through a real WSGI server (not the test client): the header's UTF-8 bytes on the wire."""
    import http.client
    import json

    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=owner)[0].key
    connection = http.client.HTTPConnection(live_server.thread.host, live_server.thread.port, timeout=30)
    connection.putrequest("POST", URL)
    connection.putheader("Authorization", f"Token {token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Idempotency-Key", "commande-été-42".encode())
    body = json.dumps({"amount": 2000, "currency": "usd"}).encode()
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()

    assert response.status == 201, response.read()
    assert Payment.objects.get().idempotency_key == "commande-été-42"
