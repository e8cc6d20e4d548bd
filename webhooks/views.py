import logging

from django.db import DatabaseError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import core.stripe_gateway as stripe_gateway
from webhooks.services import InvalidEvent, parse_event, webhook_event_receive

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe signs its requests; it has no CSRF token and no session.
@require_POST
def stripe_webhook(request):
    """
    Verify one Stripe event, store it and queue its apply job (one transaction),
    and answer at once: a worker applies it. 400 when the signature, its
    timestamp (more than 300 s off, either way), the body or its livemode is
    bad (nothing stored); 500 only when it could not be stored (Stripe delivers
    it again); otherwise 200, duplicates included. Never calls Stripe.
    """
    try:
        stripe_gateway.webhook_verify(request.body, request.headers.get("Stripe-Signature", ""))
        event = parse_event(request.body)
    except (stripe_gateway.InvalidWebhook, InvalidEvent) as exc:
        # Never the body: it may hold customer data.
        logger.warning("Refused a webhook: %s", exc)
        return JsonResponse({"detail": str(exc)}, status=400)
    try:
        webhook_event_receive(event=event)
    except DatabaseError as exc:
        # Its first line only: PostgreSQL's later lines may quote a row.
        logger.error("Could not store webhook %s: %s", event["id"], str(exc).strip().split("\n")[0])
        return JsonResponse({"detail": "The event could not be stored; deliver it again."}, status=500)
    return JsonResponse({"received": True})
