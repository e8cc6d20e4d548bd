"""
The API calls that move money or call Stripe are throttled per user (core.api.MoneyThrottle):
past the rate, 429 JSON with `code: "throttled"` and `Retry-After`. Each throttle is
proven to fire here; the rest of the suite runs with API_THROTTLING off (devkit/testing.py).
"""

import uuid

import pytest
from django.contrib.auth.models import Permission
from drf_spectacular.generators import SchemaGenerator

from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory, api_client_for
from refunds.tests.factories import PaidPaymentFactory

RATE = 2


@pytest.fixture(autouse=True)
def throttled(settings):
    settings.API_THROTTLING = True
    settings.API_THROTTLE_RATES = {scope: f"{RATE}/minute" for scope in settings.API_THROTTLE_RATES}


def create(api, user):
    return api.post("/api/payments/", {"amount": 2000, "currency": "usd"}, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


def setup_intent(api, user):
    # A canceled payment: answered 409 before any Stripe call, but counted all the same.
    payment = PaymentFactory(user=user, status=Payment.Status.CANCELED)
    return api.post(f"/api/payments/{payment.id}/setup-intent/")


def confirm(api, user):
    payment = PaymentFactory(user=user, status=Payment.Status.CANCELED)
    return api.post(f"/api/payments/{payment.id}/confirm/", {"payment_method": "pm_card_visa"})


def cancel(api, user):
    payment = PaymentFactory(user=user, status=Payment.Status.CANCELED)
    return api.post(f"/api/payments/{payment.id}/cancel/")


def refund(api, user):
    payment = PaidPaymentFactory(amount=1000)
    # More than was paid: refused (400) before any Stripe call.
    return api.post(f"/api/payments/{payment.id}/refunds/", {"amount": 5000}, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


CALLS = {"create": create, "setup-intent": setup_intent, "confirm": confirm, "cancel": cancel, "refund": refund}


def refunding_staff(username):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_refund"))
    return user


@pytest.fixture
def users(db):
    return refunding_staff("first"), refunding_staff("second")


@pytest.mark.django_db
@pytest.mark.parametrize("call", CALLS)
def test_past_the_rate_a_user_gets_429_json_with_retry_after(call, users, fake_stripe):
    user, other = users
    api = api_client_for(user)
    answers = [CALLS[call](api, user) for _ in range(RATE)]
    assert all(answer.status_code != 429 for answer in answers)

    response = CALLS[call](api, user)

    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    assert body["retry_after"] == int(response["Retry-After"])
    # Per user: someone else is not held back.
    assert CALLS[call](api_client_for(other), other).status_code != 429


@pytest.mark.django_db
def test_a_throttled_create_writes_nothing_and_calls_no_stripe(users, fake_stripe):
    user, _ = users
    api = api_client_for(user)
    for _ in range(RATE):
        create(api, user)

    assert create(api, user).status_code == 429
    assert Payment.objects.count() == RATE
    assert len(fake_stripe.list("payment_intents")) == RATE


@pytest.mark.django_db
def test_card_calls_share_one_count_against_card_testing(users):
    """A SetupIntent and a confirmation per card tried: both count towards the same rate."""
    user, _ = users
    api = api_client_for(user)

    assert setup_intent(api, user).status_code != 429
    assert confirm(api, user).status_code != 429
    assert setup_intent(api, user).status_code == 429
    assert confirm(api, user).status_code == 429


@pytest.mark.django_db
def test_reading_is_not_throttled(users):
    user, _ = users
    api = api_client_for(user)
    payment = PaidPaymentFactory(user=user)

    for _ in range(RATE + 2):
        assert api.get("/api/payments/").status_code == 200
        assert api.get(f"/api/payments/{payment.id}/refunds/").status_code == 200


@pytest.mark.django_db
def test_a_rate_set_to_off_turns_that_throttle_off(users, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "payment_change": None}
    user, _ = users
    api = api_client_for(user)

    assert all(cancel(api, user).status_code == 200 for _ in range(RATE + 2))


def test_every_api_write_is_throttled():
    """Every POST of the API moves money or calls Stripe: each names a throttle scope with a rate."""
    from django.conf import settings

    generator = SchemaGenerator()
    generator.get_schema(request=None, public=True)
    posts = [(path, callback) for path, _, method, callback in generator.endpoints if method == "POST"]
    assert len(posts) >= 5
    for path, callback in posts:
        scope = getattr(callback.cls, "throttle_scopes", {}).get("POST")
        assert scope in settings.API_THROTTLE_RATES, path
