"""
The site's URLs plus the benchmarks' reference views (the floors each path is
measured against); served only under benchmarks.settings, never in production.

- `/bench/insert/`: one INSERT of a webhook's body through the ORM, the floor of
  the webhook acknowledgement (no signature, no dedupe, no queue).
- `/bench/floor/payments/`: the minimum a payment creation needs by the design,
  as raw SQL on Django's own connection and the same SDK call, with no
  middleware (benchmarks.settings routes it before the middleware stack): the
  token looked up, the row INSERTed and committed before Stripe is called, the
  same `payment_intent_create` through core.stripe_gateway, Stripe's answer
  recorded by one UPDATE (committed), the answer as JSON.
"""

import json
import uuid

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

import core.stripe_gateway as stripe_gateway
from paymentsite.urls import urlpatterns as site_urlpatterns
from webhooks.models import WebhookEvent

FLOOR_PATH = "/bench/floor/payments/"

# Every NOT NULL column the model fills by default, written as the ORM would for a new payment.
FLOOR_INSERT = """
INSERT INTO payments_payment (
    id, user_id, idempotency_key, request_fingerprint, amount, currency, description, metadata,
    status, capture_method, amount_capturable, amount_received, refunded_amount, client_secret,
    order_reference, customer_email, customer_name, card_brand, card_last4, failure_code,
    failure_message, books_mismatch, stripe_release_refund_id, capture_idempotency_key,
    capture_request_fingerprint, dispute_status, amount_lost_to_disputes, stripe_call_started_at,
    created_at, updated_at
) VALUES (
    %s, %s, %s, '', %s, %s, %s, %s, 'requires_payment_method', 'automatic', 0, 0, 0, '',
    '', '', '', '', '', '', '', '', '', '', '', '', 0, %s, %s, %s
)
"""
FLOOR_UPDATE = """
UPDATE payments_payment
SET stripe_payment_intent_id = %s, client_secret = %s, status = %s, stripe_state_at = %s,
    stripe_call_started_at = NULL, updated_at = %s
WHERE id = %s
"""


@csrf_exempt
def bare_insert(request):
    """One INSERT of the body, as Django does it at its plainest: no signature, no dedupe, no handler."""
    event = json.loads(request.body)
    WebhookEvent.objects.create(stripe_event_id=f"bare_{uuid.uuid4()}", type=event["type"], payload=event)
    return JsonResponse({"received": True})


def floor_payment_create(request) -> HttpResponse:
    """
    POST a payment the shortest way the design allows (see the module's docstring):
    `Authorization: Token KEY`, `Idempotency-Key`, a JSON body {amount, currency,
    description?}; 201 with the payment's id, PaymentIntent id and client secret.
    Four statements on one connection (the token, INSERT, UPDATE; each its own
    commit in autocommit) around one Stripe call.
    """
    key = request.headers.get("Authorization", "").removeprefix("Token ")
    body = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.id FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id WHERE t.key = %s AND u.is_active",
            [key],
        )
        row = cursor.fetchone()
        if row is None:
            return JsonResponse({"detail": "Invalid token.", "code": "authentication_failed"}, status=401)
        payment_id = uuid.uuid4()
        now = timezone.now()
        cursor.execute(
            FLOOR_INSERT,
            [
                payment_id,
                row[0],
                request.headers["Idempotency-Key"],
                body["amount"],
                body["currency"],
                body.get("description", ""),
                json.dumps({}),
                now,
                now,
                now,
            ],
        )
        intent = stripe_gateway.payment_intent_create(
            amount=body["amount"],
            currency=body["currency"],
            metadata={"payment_id": str(payment_id)},
            description=body.get("description", ""),
            idempotency_key=f"payment-{payment_id}-create",
        )
        cursor.execute(
            FLOOR_UPDATE, [intent["id"], intent["client_secret"], intent["status"], now, timezone.now(), payment_id]
        )
    return JsonResponse(
        {
            "id": str(payment_id),
            "stripe_payment_intent_id": intent["id"],
            "status": intent["status"],
            "client_secret": intent["client_secret"],
        },
        status=201,
    )


class FloorBeforeMiddleware:
    """First in benchmarks.settings' MIDDLEWARE: the floor view answers before any other middleware runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == FLOOR_PATH and request.method == "POST":
            return floor_payment_create(request)
        return self.get_response(request)


urlpatterns = [path("bench/insert/", bare_insert), *site_urlpatterns]
