"""
The events feed: `GET /api/events/?after=<sequence>`, the caller's notifications
oldest first, so a storefront that was down catches up without relying on
delivery. Each item is exactly the body a delivery sends (notifications.payloads).
"""

from __future__ import annotations

from urllib.parse import urlencode

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.models import Event
from notifications.payloads import event_body

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class NotificationSerializer(serializers.Serializer):
    """One notification, as delivered: its envelope and `data` (the payment, and the refund or dispute)."""

    id = serializers.CharField(help_text="Stable: the `webhook-id` of every delivery attempt of this event.")
    type = serializers.CharField()
    sequence = serializers.IntegerField(help_text="Increases with every event of the site; `after` takes it.")
    timestamp = serializers.DateTimeField(help_text="When the change happened here.")
    updated_at = serializers.DateTimeField(help_text="The payment's `updated_at` after the change.")
    data = serializers.JSONField(help_text="`payment` as GET /api/payments/{id}/ answers it; `refund` or `dispute`.")

    def to_representation(self, instance):
        return event_body(instance)


def _query_integer(request, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    message = f"A whole number from {minimum}" + (f" to {maximum}." if maximum is not None else " up.")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ValidationError({name: [message]}, code="invalid")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValidationError({name: [message]}, code="invalid")
    return value


class EventFeedView(APIView):
    """
    The signed-in user's notification events (those about their payments) with
    `sequence` greater than `after`, oldest first, `limit` at a time (at most
    200); `next` is the URL of the following page, null on the last one. Events
    commit in the order of their sequence, so reading on from the last sequence
    seen never skips one.
    """

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="The last sequence already seen (default 0)."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
        ],
        responses=inline_serializer(
            "NotificationPage",
            {"results": NotificationSerializer(many=True), "next": serializers.URLField(allow_null=True)},
        ),
    )
    def get(self, request):
        after = _query_integer(request, "after", default=0, minimum=0)
        limit = _query_integer(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        events = list(Event.objects.filter(user=request.user, sequence__gt=after).order_by("sequence")[: limit + 1])
        page, more = events[:limit], len(events) > limit
        next_url = None
        if more:
            query = urlencode({"after": page[-1].sequence, "limit": limit})
            next_url = request.build_absolute_uri(f"{request.path}?{query}")
        return Response({"results": NotificationSerializer(page, many=True).data, "next": next_url})
