import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import core.stripe_gateway as stripe_gateway
from webhooks.models import WebhookEvent
from webhooks.services import InvalidEvent, parse_event, webhook_event_receive

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe signs its requests; it has no CSRF token and no session.
@require_POST
def stripe_webhook(request):
    """
    Verify, store and apply one Stripe event. 400 when the signature or the body
    is bad (nothing stored); 500 when its handler failed (stored as failed, so
    Stripe delivers it again); otherwise 200, duplicates included.
    """
    try:
        stripe_gateway.webhook_verify(request.body, request.headers.get("Stripe-Signature", ""))
        event = parse_event(request.body)
    except (stripe_gateway.InvalidWebhook, InvalidEvent) as exc:
        # Never the body: it may hold customer data.
        logger.warning("Refused a webhook: %s", exc)
        return JsonResponse({"detail": str(exc)}, status=400)
    stored, _duplicate = webhook_event_receive(event=event)
    if stored.outcome == WebhookEvent.Outcome.FAILED:
        return JsonResponse(
            {"received": True, "detail": "The event is stored but could not be applied; deliver it again."},
            status=500,
        )
    return JsonResponse({"received": True})
