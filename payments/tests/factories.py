import uuid

import factory
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from payments.models import Payment


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
    idempotency_key = factory.LazyFunction(lambda: str(uuid.uuid4()))
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test_{n:08d}")


def api_client_for(user) -> APIClient:
    """A DRF test client signed in with `user`'s API token (anonymous when `user` is None)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
