"""The site's URLs plus a bare view to measure the webhook endpoint against."""

import json
import uuid

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from paymentsite.urls import urlpatterns as site_urlpatterns
from webhooks.models import WebhookEvent


@csrf_exempt
def bare_insert(request):
    """One INSERT of the body, as Django does it at its plainest: no signature, no dedupe, no handler."""
    event = json.loads(request.body)
    WebhookEvent.objects.create(stripe_event_id=f"bare_{uuid.uuid4()}", type=event["type"], payload=event)
    return JsonResponse({"received": True})


urlpatterns = [path("bench/insert/", bare_insert), *site_urlpatterns]
