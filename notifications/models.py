"""
Notifications to the storefront: the outgoing events (a transactional outbox),
the storefront endpoints that hear of them, and each delivery of an event to an
endpoint with its attempts.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class EventType(models.TextChoices):
    """What a storefront can hear of; README "Notifications to the storefront" says what each one means."""

    PAYMENT_SUCCEEDED = "payment.succeeded", "payment.succeeded: paid (captured at once)"
    PAYMENT_FAILED = "payment.failed", "payment.failed: a payment attempt failed"
    PAYMENT_CANCELED = "payment.canceled", "payment.canceled: canceled, or an authorization voided or expired"
    PAYMENT_REQUIRES_CAPTURE = "payment.requires_capture", "payment.requires_capture: authorized, to capture"
    PAYMENT_CAPTURED = "payment.captured", "payment.captured: an authorized payment was captured"
    PAYMENT_REFUNDED = "payment.refunded", "payment.refunded: money given back, in part or in full"
    REFUND_FAILED = "refund.failed", "refund.failed: a refund did not go through"
    DISPUTE_CREATED = "dispute.created", "dispute.created: the shopper's bank opened a dispute"
    DISPUTE_CLOSED = "dispute.closed", "dispute.closed: a dispute was won, lost or withdrawn"
    # Sent by staff ("send a test event") to one endpoint; never in the feed.
    TEST = "notification.test", "notification.test: a test sent from the admin"


# The types an endpoint may ask for: all but the test, which goes to the endpoint it tests.
SUBSCRIBABLE_TYPES = [value for value in EventType.values if value != EventType.TEST]


def all_event_types() -> list[str]:
    return list(SUBSCRIBABLE_TYPES)


def new_endpoint_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Endpoint(models.Model):
    """
    A storefront URL that hears of payments: those of its owner (an API user), or
    every payment when it has none (an operator's). Its secret signs every
    notification; it is shown once, when made or rotated, and never again.
    """

    url = models.URLField(
        "URL",
        max_length=2000,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http:// or https:// only. Redirects are not followed: give the final address.",
    )
    description = models.CharField(max_length=255, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_endpoints",
        help_text="The API user whose payments it hears of; empty: every payment (an operator's endpoint).",
    )
    event_types = ArrayField(
        models.CharField(max_length=64, choices=[(t, EventType(t).label) for t in SUBSCRIBABLE_TYPES]),
        default=all_event_types,
        help_text="The notifications it wants.",
    )
    enabled = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, editable=False)
    secret_created_at = models.DateTimeField(default=timezone.now, editable=False)
    # After a rotation the old secret signs too, for a while, so the storefront can switch over.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Since when every attempt to reach it has failed (None: its last attempt succeeded).
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=255, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["url", "pk"]
        indexes = [
            models.Index(fields=["owner"], name="endpoint_owner", condition=Q(enabled=True)),
            models.Index(fields=["failing_since"], name="endpoint_failing", condition=Q(failing_since__isnull=False)),
        ]

    def __str__(self):
        return self.url

    def save(self, *args, **kwargs):
        if not self.secret:
            self.secret = new_endpoint_secret()
            self.secret_created_at = timezone.now()
        super().save(*args, **kwargs)

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The secrets that sign a notification sent at `now`: the current one, and the old one while it lasts."""
        signing = [self.secret]
        if self.previous_secret and self.previous_secret_until and self.previous_secret_until > now:
            signing.append(self.previous_secret)
        return signing

    def wants(self, event_type: str) -> bool:
        return event_type == EventType.TEST or event_type in self.event_types

    @property
    def disabled_for_failing(self) -> bool:
        """Disabled by the site itself because every delivery failed for too long (see `disable`)."""
        return not self.enabled and self.disabled_at is not None and self.failing_since is not None

    def rotate_secret(self, *, now: datetime, overlap: timedelta) -> str:
        """
        A new secret, answered once; the old one still signs for `overlap`, so a
        storefront verifying with either meanwhile accepts every notification.
        The caller holds the row lock and saves.
        """
        self.previous_secret = self.secret
        self.previous_secret_until = now + overlap
        self.secret = new_endpoint_secret()
        self.secret_created_at = now
        return self.secret

    def disable(self, *, now: datetime, reason: str) -> None:
        """Stop sending to it: its pending deliveries fail at their next attempt, and no new ones are made."""
        self.enabled = False
        self.disabled_at = now
        self.disabled_reason = reason[:255]

    def enable(self) -> None:
        """Send to it again, with a clean record: its failures so far no longer count towards disabling it."""
        self.enabled = True
        self.disabled_at = None
        self.disabled_reason = ""
        self.failing_since = None


class EventSequence(models.Model):
    """
    One row: the last `sequence` given to an event. Taking the next one locks the
    row until the transaction ends, so events commit in the order of their
    sequence and a feed read `after=N` never skips one that commits late.
    """

    id = models.PositiveSmallIntegerField(primary_key=True)
    last_value = models.BigIntegerField()

    def __str__(self):
        return f"last sequence {self.last_value}"


class Event(models.Model):
    """
    One change a storefront cares about, written in the same transaction as the
    change: its type, its place in the order of all events (`sequence`), and what
    the storefront is told (`payload`: the payment as the API answers it, and the
    refund or dispute concerned). Never changed once committed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=64, choices=EventType.choices)
    sequence = models.BigIntegerField(unique=True, editable=False)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="notification_events"
    )
    # The payment's owner, whose feed (GET /api/events/) lists the event; null for
    # a payment first seen through Stripe and for a test.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["sequence"]
        indexes = [
            models.Index(fields=["user", "sequence"], name="event_user_sequence"),
            models.Index(fields=["payment", "-sequence"], name="event_payment_sequence"),
        ]

    def __str__(self):
        return f"{self.type} #{self.sequence}"

    @property
    def public_id(self) -> str:
        """The id the storefront sees, as `id` and as the `webhook-id` header of every attempt."""
        return f"ntf_{self.id.hex}"


class Delivery(models.Model):
    """One event to one endpoint: pending until the endpoint answers 2xx (delivered) or retries run out (failed)."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Failed attempts since it was queued or redelivered by hand: the place in the retry schedule.
    retry_step = models.PositiveIntegerField(default=0, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the next attempt is due; its job is queued for that moment (None once delivered or failed).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker is sending it: another job for it keeps off until the lease ends.
    sending_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        # Newest first by id (made in time order): the lists and the endpoint's log read an index.
        ordering = ["-pk"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_unique_endpoint_event"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_newest"),
            models.Index(fields=["endpoint", "state"], name="delivery_endpoint_state"),
            models.Index(fields=["state", "-id"], name="delivery_state_newest"),
        ]

    def __str__(self):
        return f"{self.event.type} to {self.endpoint} ({self.state})"

    def is_due(self, due: datetime) -> bool:
        """Whether the attempt queued for `due` is still the one this delivery waits for."""
        return self.state == self.State.PENDING and self.next_attempt_at == due

    def record_success(self, *, at: datetime, status_code: int) -> None:
        self.attempts += 1
        self.last_attempt_at = at
        self.last_status_code = status_code
        self.last_error = ""
        self.state = self.State.DELIVERED
        self.delivered_at = at
        self.next_attempt_at = None

    def record_failure(self, *, at: datetime, status_code: int | None, error: str) -> None:
        """Count a failed attempt; `schedule_retry` decides what comes next. The caller holds the row lock and saves."""
        self.attempts += 1
        self.last_attempt_at = at
        self.last_status_code = status_code
        self.last_error = error[:255]

    def schedule_retry(self, *, at: datetime, retry_delays: list[int]) -> datetime | None:
        """
        After a failed attempt at `at`: the next one is due after the next delay
        of `retry_delays` (seconds); answered, and the caller queues its job.
        None once they are all spent: the delivery has failed.
        """
        if self.retry_step >= len(retry_delays):
            self.give_up(self.last_error)
            return None
        self.next_attempt_at = at + timedelta(seconds=retry_delays[self.retry_step])
        self.retry_step += 1
        return self.next_attempt_at

    def give_up(self, error: str) -> None:
        self.state = self.State.FAILED
        self.last_error = error[:255]
        self.next_attempt_at = None

    def redeliver(self, *, now: datetime) -> None:
        """Send it again now, whatever came of it before, with a fresh round of retries."""
        self.state = self.State.PENDING
        self.retry_step = 0
        self.next_attempt_at = now
        self.delivered_at = None


class DeliveryAttempt(models.Model):
    """
    One try at sending a delivery: the status code the endpoint answered (None
    when it gave none), how long it took, and the start of its answer. Never
    the secret or the signature.
    """

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered = models.BooleanField(default=False)
    error = models.CharField(max_length=255, blank=True)
    response_excerpt = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-pk"]
        indexes = [models.Index(fields=["delivery", "-attempted_at"], name="attempt_delivery_time")]

    def __str__(self):
        return f"{self.status_code or self.error} in {self.duration_ms} ms"
