"""
The checkout's server side: the SetupIntent and confirm endpoints the page calls
(and their service), the pages themselves, and the customers' sign-in page.
The browser journeys are in test_checkout_browser.py.
"""

import json
import urllib.request

import pytest
from django.conf import settings
from django.test import Client

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory, create_payment
from refunds.models import Refund
from refunds.tests.factories import RefundFactory

PAYS = "4242424242424242"
DECLINED = "4000000000000341"
THREE_D_SECURE = "4000002760003184"


def card_payment_method(api, payment, fake_stripe, number) -> str:
    """A PaymentMethod for a test card, made the way the page's Stripe.js makes it."""
    response = api.post(f"/api/payments/{payment.id}/setup-intent/")
    assert response.status_code == 201
    secret = response.json()["client_secret"]
    # What localstripe's Stripe.js sends for confirmCardSetup: the publishable key, no secret key.
    body = {
        "key": settings.STRIPE_PUBLISHABLE_KEY,
        "client_secret": secret,
        "payment_method_data": {
            "type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
        },
    }
    request = urllib.request.Request(
        f"{fake_stripe.api_base}/v1/setup_intents/{response.json()['id']}/confirm",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())["payment_method"]


def confirm(api, payment, payment_method):
    return api.post(f"/api/payments/{payment.id}/confirm/", {"payment_method": payment_method})


def charges_of(fake_stripe, payment):
    return [c for c in fake_stripe.list("charges") if c.get("payment_intent") == payment.stripe_payment_intent_id]


# --- POST /api/payments/{id}/setup-intent/ -------------------------------------


@pytest.mark.django_db
def test_setup_intent_gives_the_owner_a_client_secret_and_carries_our_id(owner_api, fake_stripe):
    payment = create_payment(owner_api, "checkout-1", amount=2400)

    response = owner_api.post(f"/api/payments/{payment.id}/setup-intent/")

    assert response.status_code == 201
    body = response.json()
    assert body["client_secret"].startswith(body["id"] + "_secret_")
    assert stripe_gateway.setup_intent_retrieve(body["id"])["metadata"] == {"payment_id": str(payment.id)}


@pytest.mark.django_db
def test_each_card_attempt_gets_its_own_setup_intent(owner_api, fake_stripe):
    """A SetupIntent takes one card: trying another card needs a new one."""
    payment = create_payment(owner_api, "checkout-1", amount=2400)

    first = owner_api.post(f"/api/payments/{payment.id}/setup-intent/").json()
    second = owner_api.post(f"/api/payments/{payment.id}/setup-intent/").json()

    assert first["id"] != second["id"]


@pytest.mark.django_db
def test_setup_intent_for_a_paid_payment_is_409(owner_api, owner, fake_stripe):
    payment = PaymentFactory(user=owner, status=Payment.Status.SUCCEEDED)

    response = owner_api.post(f"/api/payments/{payment.id}/setup-intent/")

    assert response.status_code == 409
    assert fake_stripe.list("setup_intents") == []


@pytest.mark.django_db
def test_setup_intent_for_someone_elses_payment_is_404(outsider_api, owner, fake_stripe):
    payment = PaymentFactory(user=owner)

    assert outsider_api.post(f"/api/payments/{payment.id}/setup-intent/").status_code == 404
    assert fake_stripe.list("setup_intents") == []


# --- POST /api/payments/{id}/confirm/ -------------------------------------------


@pytest.mark.django_db
def test_confirm_with_a_card_that_pays_records_succeeded(owner_api, fake_stripe):
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, PAYS)

    response = confirm(owner_api, payment, card)

    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert intent["status"] == "succeeded" and intent["payment_method"] == card
    assert len(charges_of(fake_stripe, payment)) == 1


@pytest.mark.django_db
def test_confirm_with_a_declined_card_records_failed_with_stripes_message(owner_api, fake_stripe):
    """Stripe answers 402: the payment is `failed` with Stripe's words, and the answer says so."""
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, DECLINED)

    response = confirm(owner_api, payment, card)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["failure_code"] == "card_declined"
    assert body["failure_message"] == "Your card was declined."
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_message == "Your card was declined."


@pytest.mark.django_db
def test_confirm_with_a_3d_secure_card_answers_requires_action_and_charges_nothing(owner_api, fake_stripe):
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, THREE_D_SECURE)

    response = confirm(owner_api, payment, card)

    assert response.status_code == 200
    assert response.json()["status"] == "requires_action"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_ACTION
    assert charges_of(fake_stripe, payment) == []


@pytest.mark.django_db
def test_a_confirm_whose_answer_was_lost_is_retried_without_a_second_charge(owner_api, fake_stripe):
    """
    Stripe confirmed but the answer never came back (503). The retry sends the same
    Stripe idempotency keys, so Stripe replays its answer: paid once, recorded here.
    """
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, PAYS)
    fake_stripe.add_fault("drop", path=r"/confirm$", times=1)

    lost = confirm(owner_api, payment, card)
    payment.refresh_from_db()
    assert lost.status_code == 503
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD

    retried = confirm(owner_api, payment, card)

    assert retried.status_code == 200
    assert retried.json()["status"] == "succeeded"
    assert len(charges_of(fake_stripe, payment)) == 1


@pytest.mark.django_db
def test_another_card_after_a_lost_answer_finds_the_payment_paid_and_charges_once(owner_api, fake_stripe):
    """
    The customer saw an error and tried another card, but the first confirmation had
    gone through: Stripe refuses the second, and the answer is the payment, paid once.
    """
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    first_card = card_payment_method(owner_api, payment, fake_stripe, PAYS)
    fake_stripe.add_fault("drop", path=r"/confirm$", times=1)
    assert confirm(owner_api, payment, first_card).status_code == 503

    response = confirm(owner_api, payment, card_payment_method(owner_api, payment, fake_stripe, PAYS))

    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert len(charges_of(fake_stripe, payment)) == 1


@pytest.mark.django_db
def test_confirm_of_a_paid_payment_is_409_and_charges_nothing(owner_api, fake_stripe):
    """A double click after the payment went through is refused before Stripe is called."""
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    confirm(owner_api, payment, card_payment_method(owner_api, payment, fake_stripe, PAYS))

    response = confirm(owner_api, payment, "pm_card_visa")

    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]
    assert len(charges_of(fake_stripe, payment)) == 1


@pytest.mark.django_db
def test_confirm_when_stripe_fails_is_502_and_leaves_the_payment_as_it_was(owner_api, fake_stripe):
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, PAYS)
    fake_stripe.add_fault("error500", path=r"/confirm$", times=1)

    response = confirm(owner_api, payment, card)

    assert response.status_code == 502
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert confirm(owner_api, payment, card).json()["status"] == "succeeded"


@pytest.mark.django_db
def test_confirm_with_an_unknown_payment_method_is_400_not_a_decline(owner_api, fake_stripe):
    """
    Stripe refuses the request itself (no such PaymentMethod): a definite refusal
    of the caller's input, 400 with a code (never a "retry" 502), not a declined card.
    """
    payment = create_payment(owner_api, "checkout-1", amount=2400)

    response = confirm(owner_api, payment, "pm_doesnotexist")

    assert response.status_code == 400
    assert response.json()["code"] == "stripe_invalid_request"
    assert "retry" not in response.json()["detail"].lower()
    payment.refresh_from_db()
    assert payment.status != Payment.Status.FAILED
    assert payment.failure_message == ""


@pytest.mark.django_db
@pytest.mark.parametrize("payment_method", ["", "card_123", "pm_with space", None, 42])
def test_confirm_needs_a_payment_method_id(owner_api, owner, payment_method, fake_stripe):
    payment = PaymentFactory(user=owner)

    response = confirm(owner_api, payment, payment_method)

    assert response.status_code == 400
    assert response.json()["errors"]["payment_method"][0]["code"] in ("invalid", "required", "blank", "null")


@pytest.mark.django_db
def test_confirm_of_someone_elses_payment_is_404_and_charges_nothing(owner_api, outsider_api, fake_stripe):
    payment = create_payment(owner_api, "checkout-1", amount=2400)
    card = card_payment_method(owner_api, payment, fake_stripe, PAYS)

    response = confirm(outsider_api, payment, card)

    assert response.status_code == 404
    assert charges_of(fake_stripe, payment) == []


@pytest.mark.django_db
def test_confirm_needs_a_signed_in_user(client, owner):
    payment = PaymentFactory(user=owner)

    response = client.post(f"/api/payments/{payment.id}/confirm/", {"payment_method": "pm_x"})

    assert response.status_code in (401, 403)


@pytest.mark.django_db
def test_the_checkout_calls_are_in_the_openapi_schema(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    assert "/api/payments/{payment_id}/setup-intent/" in paths
    confirm_call = paths["/api/payments/{payment_id}/confirm/"]["post"]
    assert set(confirm_call["responses"]) >= {"200", "409"}


# --- Session-authenticated calls, as the page makes them --------------------------


@pytest.mark.django_db
def test_a_session_call_without_the_csrf_token_is_refused(owner, fake_stripe):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)

    response = browser.post(
        "/api/payments/", {"amount": 2400, "currency": "usd"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 403
    assert not Payment.objects.exists()


# --- The pages ------------------------------------------------------------------


@pytest.mark.django_db
def test_checkout_page_sends_a_visitor_to_the_customer_sign_in(client):
    response = client.get("/checkout/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/checkout/"


@pytest.mark.django_db
def test_checkout_page_loads_stripe_js_from_the_setting_with_the_publishable_key(client, owner, settings):
    settings.STRIPE_JS_URL = "http://127.0.0.1:9/js.stripe.com/v3/"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_checkout_page"
    client.force_login(owner)

    html = client.get("/checkout/").content.decode()

    assert '<script src="http://127.0.0.1:9/js.stripe.com/v3/"></script>' in html
    assert '"pk_test_checkout_page"' in html


@pytest.mark.django_db
def test_checkout_page_says_payments_are_off_without_a_publishable_key(client, owner, settings):
    settings.STRIPE_PUBLISHABLE_KEY = ""
    client.force_login(owner)

    html = client.get("/checkout/").content.decode()

    assert "STRIPE_PUBLISHABLE_KEY is not set" in html
    assert "js.stripe.com" not in html


@pytest.mark.django_db
def test_status_page_shows_the_payment_and_its_refunds_from_the_database(client, owner):
    payment = PaymentFactory(user=owner, status=Payment.Status.PARTIALLY_REFUNDED, refunded_amount=500)
    RefundFactory(payment=payment, amount=500, status=Refund.Status.SUCCEEDED)
    client.force_login(owner)

    response = client.get(f"/checkout/{payment.id}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-status="partially_refunded"' in html
    assert "$20.00" in html and "$5.00" in html
    assert "<code>succeeded</code>" in html  # the refund's status


@pytest.mark.django_db
def test_status_page_shows_stripes_decline_message(client, owner):
    payment = PaymentFactory(
        user=owner,
        status=Payment.Status.FAILED,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    client.force_login(owner)

    html = client.get(f"/checkout/{payment.id}/").content.decode()

    assert "Declined" in html and "Your card was declined." in html


@pytest.mark.django_db
def test_status_page_of_someone_elses_payment_is_404(client, owner, outsider):
    payment = PaymentFactory(user=owner)
    client.force_login(outsider)

    assert client.get(f"/checkout/{payment.id}/").status_code == 404


@pytest.mark.django_db
def test_status_page_sends_a_visitor_to_sign_in(client, owner):
    payment = PaymentFactory(user=owner)

    response = client.get(f"/checkout/{payment.id}/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_customer_who_is_not_staff_signs_in_and_lands_on_the_checkout(client, fast_password_hashing):
    UserFactory(username="shop", password="paymentsite-demo")

    response = client.post("/accounts/login/", {"username": "shop", "password": "paymentsite-demo"})

    assert response.status_code == 302
    assert response["Location"] == "/checkout/"
    assert client.get("/checkout/").status_code == 200


@pytest.mark.django_db
def test_a_wrong_password_is_refused_on_the_sign_in_page(client, fast_password_hashing):
    UserFactory(username="shop", password="paymentsite-demo")

    response = client.post("/accounts/login/", {"username": "shop", "password": "wrong"})

    assert response.status_code == 200
    assert "do not match" in response.content.decode()
    assert client.get("/checkout/").status_code == 302


def test_home_page_links_to_the_checkout(client):
    assert b'href="/checkout/"' in client.get("/").content


@pytest.mark.django_db
def test_sign_out_from_the_checkout_goes_home(client, owner):
    client.force_login(owner)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/checkout/").status_code == 302
