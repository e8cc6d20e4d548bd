"""
Webhook use cases: receiving a Stripe event (store it once, apply it once, in
one transaction) and reprocessing the ones that failed. Reconciling with Stripe
for the events that never came is in webhooks.reconcile.

The view (webhooks.views) verifies the signature; everything after that is
here. Applying an event never calls Stripe: each event type's handler
(webhooks.handlers) makes one service call of the payments or refunds app.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils import timezone

from core.storable import unstorable_string_problem
from webhooks.handlers import HANDLERS, EventIgnored, object_problem
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)


# The width of WebhookEvent's id columns; Stripe's ids are far shorter.
MAX_ID_LENGTH = 255


class InvalidEvent(ValueError):
    """A correctly signed body that is not a Stripe event we can store."""


def parse_event(body: bytes) -> dict:
    """
    The event (a dict) in a verified request body (bytes). Raises InvalidEvent
    when it is not JSON, lacks a string `id` or `type` (at most 255 characters),
    an integer `created` (Unix seconds) or a `data.object`, when the object of a
    handled type lacks what its handler reads (handlers.object_problem), or
    when it holds text PostgreSQL cannot store. Pure: no lock, no write.
    """
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("The body is not JSON.") from exc
    if not isinstance(event, dict):
        raise InvalidEvent("The body is not a JSON object.")
    for name in ("id", "type"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidEvent(f"The event has no {name}.")
        if len(event[name]) > MAX_ID_LENGTH:
            raise InvalidEvent(f"The event's {name} is longer than {MAX_ID_LENGTH} characters.")
    if not isinstance(event.get("created"), int) or isinstance(event["created"], bool):
        raise InvalidEvent("The event has no created time.")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("The event has no data.object.")
    problem = object_problem(event["type"], data["object"])
    if problem:
        raise InvalidEvent(problem)
    problem = unstorable_string_problem(event)
    if problem:
        raise InvalidEvent(f"The event cannot be stored: {problem}.")
    return event


def webhook_event_receive(*, event: dict) -> tuple[WebhookEvent, bool]:
    """
    Store a verified event (a dict, as `parse_event` answers it) under its Stripe
    id and apply it, in one transaction; answers (stored event, duplicate). The
    stored event's `outcome` says how applying went: `processed`, `ignored`
    (no handler, or the handler's EventIgnored), or `failed` (any other error
    of the handler, kept in `error`; nothing it did is kept). Raises nothing
    for a failing handler.

    A second delivery of an applied or ignored event changes nothing and answers
    duplicate; a second delivery of a failed one runs its handler again. Two
    copies arriving together queue on the unique index: the second one waits
    for the first to commit and then finds it. Locks: the event row, then what
    the handler locks (the payment row, then its refunds). No network call.
    Safe to retry: that is what Stripe's redeliveries are.
    """
    with transaction.atomic():
        stored, created = WebhookEvent.objects.get_or_create(
            stripe_event_id=event["id"],
            defaults={
                "type": event["type"],
                "payload": event,
                "object_id": str(event["data"]["object"].get("id") or "")[:MAX_ID_LENGTH],
            },
        )
        if not created:
            stored = WebhookEvent.objects.select_for_update().get(pk=stored.pk)
            if stored.outcome != WebhookEvent.Outcome.FAILED:
                return stored, True
        _apply(stored)
    return stored, False


def webhook_event_reprocess(*, event: WebhookEvent) -> WebhookEvent:
    """
    Run a failed event's handler again (the admin's action, `process_webhooks
    --failed`); answers the event as stored afterwards, its `outcome` and
    `error` updated. Raises nothing for a failing handler. Locks the event row,
    then what the handler locks, so a reprocess racing Stripe's own retry
    applies it once; an event that is no longer failed is left alone. No
    network call. Safe to repeat.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if event.outcome == WebhookEvent.Outcome.FAILED:
            _apply(event)
    return event


def _apply(event: WebhookEvent) -> None:
    """Dispatch to the event type's handler and record the outcome; the caller holds the event row."""
    handler = HANDLERS.get(event.type)
    event.processed_at = timezone.now()
    event.error = ""
    if handler is None:
        event.outcome = WebhookEvent.Outcome.IGNORED
    else:
        try:
            # A savepoint of its own: a failing handler leaves nothing half-applied,
            # while the event itself is still stored with the failure.
            with transaction.atomic():
                payment = handler(event)
        except EventIgnored as exc:
            event.outcome = WebhookEvent.Outcome.IGNORED
            event.error = str(exc)
        except Exception as exc:
            logger.exception("Webhook %s (%s) failed", event.stripe_event_id, event.type)
            event.outcome = WebhookEvent.Outcome.FAILED
            event.error = f"{type(exc).__name__}: {exc}"
        else:
            event.outcome = WebhookEvent.Outcome.PROCESSED
            if payment is not None:
                event.payment = payment
    event.save()
