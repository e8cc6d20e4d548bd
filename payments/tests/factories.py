import uuid

import factory
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.services import payment_record_intent


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class PaymentFactory(factory.django.DjangoModelFactory):
    """A payment as the API leaves it once Stripe has answered (no real PaymentIntent)."""

    class Meta:
        model = Payment

    user = factory.SubFactory(UserFactory)
    amount = 2000
    currency = "usd"
    status = Payment.Status.REQUIRES_PAYMENT_METHOD
    # A paid payment received its whole amount (automatic capture); an authorized one may capture it.
    amount_received = factory.LazyAttribute(lambda p: p.amount if p.status in Payment.PAID else 0)
    amount_capturable = factory.LazyAttribute(lambda p: p.amount if p.status == Payment.Status.REQUIRES_CAPTURE else 0)
    idempotency_key = factory.LazyFunction(lambda: str(uuid.uuid4()))
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test_{n:08d}")


def api_client_for(user) -> APIClient:
    """A DRF test client signed in with `user`'s API token (anonymous when `user` is None)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def create_payment(client, key: str = "payment-1", *, amount: int = 2000, currency: str = "usd", **body) -> Payment:
    """
    A payment made through `POST /api/payments/` by `client`'s user (`body`: more of
    the request, e.g. `capture_method`); its PaymentIntent is at the local Stripe.
    """
    response = client.post(
        "/api/payments/", {"amount": amount, "currency": currency, **body}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 201, response.content
    return Payment.objects.get(pk=response.json()["id"])


def authorized_payment(client, key: str = "authorized-1", *, amount: int = 10_000, currency: str = "usd") -> Payment:
    """
    A payment made through the API with `capture_method: manual`, its card
    authorized at the local Stripe (nothing captured) and recorded here: `requires_capture`.
    """
    payment = create_payment(client, key, amount=amount, currency=currency, capture_method="manual")
    intent = confirm_at_stripe(payment)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        payment_record_intent(payment=payment, intent=intent)
    assert payment.status == Payment.Status.REQUIRES_CAPTURE
    return payment


def confirm_at_stripe(payment: Payment, payment_method: str = "pm_card_visa") -> dict | None:
    """
    What the customer's browser makes Stripe do: set the card on the PaymentIntent and
    confirm it. Answers the PaymentIntent (a dict), or None when the card is declined.
    Our app is not told: only a webhook or a reconcile would record it.
    """
    intent_id = payment.stripe_payment_intent_id
    stripe_gateway.payment_intent_update(intent_id, idempotency_key=f"pm-{payment.id}", payment_method=payment_method)
    try:
        return stripe_gateway.payment_intent_confirm(intent_id, idempotency_key=f"confirm-{payment.id}")
    except stripe_gateway.StripeRefused:
        return None
