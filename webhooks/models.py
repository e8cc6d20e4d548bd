from datetime import UTC, datetime

from django.db import models
from django.utils import timezone


class WebhookEvent(models.Model):
    """
    A verified Stripe event, stored once under its Stripe id, `pending` until a
    worker's apply job has run its handler (webhooks.tasks), then `processed`,
    `ignored`, or `failed` once every attempt has failed.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    payload = models.JSONField(help_text="The event as received.")
    # The Stripe object the event is about (PaymentIntent, refund, dispute...), for lookups.
    object_id = models.CharField(max_length=255, blank=True, db_index=True)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    # Times its handler was run: each failed attempt keeps its error until the next one.
    attempts = models.PositiveIntegerField(default=0)
    # Why it failed or was ignored: the exception's class and message, never row data or secrets.
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["outcome", "-received_at"], name="webhook_outcome_received"),
            models.Index(fields=["type"], name="webhook_type"),
        ]

    def __str__(self):
        return f"{self.type} {self.stripe_event_id}"

    @property
    def stripe_object(self) -> dict:
        """The Stripe object the event carries (`data.object`), as it was when the event happened."""
        return self.payload["data"]["object"]

    @property
    def occurred_at(self) -> datetime:
        """When the event happened at Stripe (its `created`, to the second): the age of its news."""
        return datetime.fromtimestamp(int(self.payload["created"]), tz=UTC)
