"""
Webhook use cases: receiving a Stripe event (store it once, apply it once, in
one transaction), reprocessing the ones that failed, and reconciling with
Stripe for the events that never came.

The view verifies the signature; everything after that is here. Applying an
event never calls Stripe. Reconciling does, and follows the project's rule: read
from Stripe with no lock held, then lock and record with the same order rules
the events go through (Payment.may_apply, Refund.may_apply).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core import stripe_gateway
from core.storable import unstorable_string_problem
from payments.models import Payment
from payments.services import payment_record_intent
from refunds.models import Refund
from refunds.services import REFUND_ID_METADATA_KEY, refund_record_stripe_refund
from webhooks.handlers import HANDLERS, EventIgnored, object_problem
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)


# The width of WebhookEvent's id columns; Stripe's ids are far shorter.
MAX_ID_LENGTH = 255


class InvalidEvent(ValueError):
    """A correctly signed body that is not a Stripe event we can store."""


def parse_event(body: bytes) -> dict:
    """The event in a verified body; raises InvalidEvent when it is not a Stripe event."""
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
    Store a verified event under its Stripe id and apply it, in one transaction;
    answers (stored event, duplicate).

    A second delivery of an applied or ignored event changes nothing and answers
    duplicate; a second delivery of a failed one runs its handler again. Two
    copies arriving together queue on the unique index: the second one waits
    for the first to commit and then finds it. Locks: the event row, then what
    the handler locks (the payment row, then its refunds). No network call.
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
    --failed`). Locks the event row, so a reprocess racing Stripe's own retry
    applies it once; an event that is no longer failed is left alone.
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


# --- Reconciling with Stripe -------------------------------------------------


@dataclass
class ReconcileResult:
    changed: bool = False
    # Set when the object could not be brought up to date; the command reports it.
    problem: str = ""


def payment_reconcile(*, payment: Payment) -> ReconcileResult:
    """
    Read the payment's PaymentIntent from Stripe and apply it as news of now.

    Locks: the payment row, only after Stripe has answered. Side effects: one
    read at Stripe. Safe to repeat: the order rule makes a second run a no-op.
    """
    if not payment.stripe_payment_intent_id:
        return ReconcileResult(problem="no PaymentIntent yet (its creation is retried with its Idempotency-Key)")
    read_at = timezone.now()
    try:
        intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    except stripe_gateway.StripeError as exc:
        return ReconcileResult(problem=f"Stripe: {exc.message}")
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        before = payment.status
        payment_record_intent(payment=payment, intent=intent, at=read_at)
        return ReconcileResult(changed=payment.status != before)


def payment_reconcile_refunds(*, payment: Payment) -> ReconcileResult:
    """
    List the refunds Stripe holds for a paid payment and record each one: a
    refund made in the Stripe dashboard whose events were all lost is found
    here, and one already recorded changes nothing. Locks: as
    `refund_record_stripe_refund`, only after Stripe has answered. Safe to repeat.
    """
    try:
        stripe_refunds = stripe_gateway.refund_list(payment_intent_id=payment.stripe_payment_intent_id)
    except stripe_gateway.StripeError as exc:
        return ReconcileResult(problem=f"Stripe: {exc.message}")
    changed = False
    for stripe_refund in stripe_refunds:
        known = Refund.objects.filter(stripe_refund_id=stripe_refund["id"]).values_list("status", flat=True).first()
        recorded = refund_record_stripe_refund(stripe_refund=stripe_refund)
        changed |= recorded is not None and recorded.status != known
    return ReconcileResult(changed=changed)


def refund_reconcile(*, refund: Refund) -> ReconcileResult:
    """
    Read a pending refund from Stripe and record it. One that never got Stripe's
    answer has no Stripe id: it is looked for among its payment's refunds at
    Stripe by our id in its metadata; if Stripe has none, `retry_refunds` is
    what sends it. Locks: the payment row, then the refund, only after Stripe has
    answered. Side effects: reads at Stripe. Safe to repeat.
    """
    try:
        if refund.stripe_refund_id:
            stripe_refund = stripe_gateway.refund_retrieve(refund.stripe_refund_id)
        else:
            intent_id = refund.payment.stripe_payment_intent_id
            candidates = stripe_gateway.refund_list(payment_intent_id=intent_id) if intent_id else []
            stripe_refund = next(
                (r for r in candidates if (r.get("metadata") or {}).get(REFUND_ID_METADATA_KEY) == str(refund.id)),
                None,
            )
    except stripe_gateway.StripeError as exc:
        return ReconcileResult(problem=f"Stripe: {exc.message}")
    if stripe_refund is None:
        return ReconcileResult(problem="not at Stripe (retry_refunds sends it)")
    before = refund.status
    recorded = refund_record_stripe_refund(stripe_refund=stripe_refund)
    return ReconcileResult(changed=recorded is not None and recorded.status != before)
