import uuid

import factory
from django.db import transaction

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.services import payment_record_intent
from payments.tests.factories import PaymentFactory
from refunds.models import Refund


class PaidPaymentFactory(PaymentFactory):
    """A payment whose PaymentIntent has succeeded: refundable."""

    status = Payment.Status.SUCCEEDED


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    payment = factory.SubFactory(PaidPaymentFactory)
    amount = 500
    status = Refund.Status.PENDING
    idempotency_key = factory.Sequence(lambda n: f"refund-key-{n}")


def paid_payment_at_stripe(client, *, amount: int = 10_000, currency: str = "usd") -> Payment:
    """
    A payment created through the API by `client`'s user and paid with a test card
    at the local Stripe, so that Stripe really holds the charge a refund gives back.
    """
    key = str(uuid.uuid4())
    response = client.post(
        "/api/payments/", {"amount": amount, "currency": currency}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 201, response.content
    return pay_at_stripe(Payment.objects.get(pk=response.json()["id"]))


def pay_at_stripe(payment: Payment) -> Payment:
    """Pay `payment`'s PaymentIntent with a test card at the local Stripe and record it: refundable."""
    intent_id = payment.stripe_payment_intent_id
    # localstripe refuses confirm(payment_method=...): set the card first, then confirm.
    key = f"payment-{payment.pk}"
    stripe_gateway.payment_intent_update(intent_id, idempotency_key=f"{key}-card", payment_method="pm_card_visa")
    intent = stripe_gateway.payment_intent_confirm(intent_id, idempotency_key=f"{key}-confirm")
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(stripe_payment_intent_id=intent_id)
        payment_record_intent(payment=payment, intent=intent)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def request_refund(client, payment, body: dict | None = None, key: str | None = "refund-1"):
    """
    `POST /api/payments/{id}/refunds/` as `client`'s user; `payment` is a Payment or its
    id; no `Idempotency-Key` header when `key` is None.
    """
    payment_id = getattr(payment, "pk", payment)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(f"/api/payments/{payment_id}/refunds/", body or {}, format="json", **headers)
