"""
One handler per Stripe event type, found in `HANDLERS` (filled by `@handles`).

A handler gets the stored event, makes one service call with its object (the
payments and refunds services hold the order rules and the locks) and answers
the payment it touched, or None. A worker's apply job runs it (webhooks.services.
webhook_event_apply) under the event's row lock and in a savepoint of its own:
raising rolls back everything it did. It never calls Stripe: the event carries
what it needs. So every handler is safe to run again on the same event: the
services' order rules make a second run change nothing.

Two outcomes besides success:
- `EventIgnored`: the event is about something that is not ours to record (a
  charge made without a PaymentIntent); the event is stored as `ignored`.
- `PaymentNotKnownYet`: a refund, charge or dispute of a PaymentIntent we have
  not seen yet. The object does not carry what a payment needs (its amount), so
  the handler cannot create one; the apply job then reads that PaymentIntent from
  Stripe, adopts it, and runs the handler again. The same for a refund, in an API
  version before 2025-03-31, of a payment not yet known to be captured: it may
  only release the authorization (never a refund), which is told once the
  capture's or the void's news is here (the job retries with backoff).
"""

from __future__ import annotations

from collections.abc import Callable

import core.stripe_gateway as stripe_gateway
from payments.disputes import dispute_record_stripe_dispute
from payments.models import Payment
from payments.services import payment_for_intent, payment_record_stripe_charge, payment_record_stripe_intent
from refunds.services import refund_record_stripe_charge, refund_record_stripe_refund
from webhooks.models import WebhookEvent

Handler = Callable[[WebhookEvent], Payment | None]

HANDLERS: dict[str, Handler] = {}

# What each kind of Stripe object must carry, and as what, for its handler to read it.
# An event whose object lacks one is malformed: refused with a 400 before anything
# is stored, rather than stored as failed and retried by Stripe for days.
OBJECT_FIELDS: dict[str, dict[str, type]] = {
    "payment_intent": {"id": str, "status": str, "amount": int, "currency": str},
    "refund": {"id": str, "status": str, "amount": int},
    "charge": {"id": str},
    "dispute": {"id": str, "status": str, "amount": int},
}
# The kind of object each handled event type carries.
CARRIES: dict[str, str] = {}


class EventIgnored(Exception):
    """The event is valid but names nothing this site records."""


class PaymentNotKnownYet(Exception):
    """The event needs the payment of PaymentIntent `intent_id`, which no payment here records yet."""

    def __init__(self, message: str, *, intent_id: str):
        super().__init__(message)
        self.intent_id = intent_id


def handles(*event_types: str, carries: str) -> Callable[[Handler], Handler]:
    """
    Register the decorated function as the handler of `event_types`, whose
    object is a `carries` (a key of OBJECT_FIELDS). Raises ValueError, at
    import, when a type already has a handler. No side effect besides the tables.
    """

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            if event_type in HANDLERS:
                raise ValueError(f"{event_type} already has a handler: {HANDLERS[event_type].__name__}")
            HANDLERS[event_type] = handler
            CARRIES[event_type] = carries
        return handler

    return register


def object_problem(event_type: str, stripe_object: dict) -> str | None:
    """
    What is missing from, or of the wrong type in, `stripe_object` (an event's
    `data.object`) for the handler of `event_type` to read it, as a sentence
    for the 400 answer; None if it reads, or if no handler takes the type. Pure.
    """
    fields = OBJECT_FIELDS.get(CARRIES.get(event_type, ""), {})
    for name, kind in fields.items():
        value = stripe_object.get(name)
        # bool is an int to Python, never to Stripe.
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            return f"The event's {CARRIES[event_type]} has no valid {name}."
    return None


@handles(
    "payment_intent.created",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    carries="payment_intent",
)
def payment_intent_changed(event: WebhookEvent) -> Payment:
    """
    Move the payment to the PaymentIntent's status, if Payment.may_apply allows;
    adopt a PaymentIntent the app never made (`payment_record_stripe_intent`).
    Answers the payment. Raises ValueError for a status Stripe does not have.
    """
    return payment_record_stripe_intent(
        intent=event.stripe_object,
        at=event.occurred_at,
        # The intent is back in requires_payment_method after a failure; the event type says why.
        payment_failed=event.type == "payment_intent.payment_failed",
    )


@handles("refund.created", "refund.updated", "refund.failed", "charge.refund.updated", carries="refund")
def refund_changed(event: WebhookEvent) -> Payment:
    """
    Record the refund (`refund_record_stripe_refund`, in the event's API
    version: a dashboard refund becomes one with no creator; an older version's
    release of uncaptured money is no refund, and an expiry cancels the
    payment); its payment's refunded amount and status follow. Answers the
    payment. Raises EventIgnored when the refund names no PaymentIntent,
    PaymentNotKnownYet when its payment is not here yet, and CaptureNotKnownYet
    when it is not yet known to be captured and that decides whether it is a
    refund at all.
    """
    stripe_refund = event.stripe_object
    # CaptureNotKnownYet (an older version's refund of a payment not yet known to be
    # captured) is a failed attempt like any other: the apply job retries it later,
    # by when the capture's or the void's news is here.
    refund = refund_record_stripe_refund(stripe_refund=stripe_refund, api_version=event.payload.get("api_version"))
    if refund is not None:
        return refund.payment
    # Nothing recorded as a refund: a release of uncaptured money, if its payment is here.
    intent_id = stripe_gateway.id_of(stripe_refund.get("payment_intent"))
    payment = payment_for_intent(intent={"id": intent_id}, adopt=False) if intent_id else None
    if payment is None:
        raise _not_recorded(stripe_refund, what="refund's charge")
    return payment


@handles("charge.refunded", carries="charge")
def charge_refunded(event: WebhookEvent) -> Payment:
    """
    A charge was refunded (`refund_record_stripe_charge`). A current charge no
    longer embeds its refunds (the `refund.*` events name them), so this event
    can only record the refunds an older API version embeds. What it proves in
    any version: a captured charge's payment has succeeded, having received
    `amount_captured`; an older version's refunded *uncaptured* charge is a void
    or an expiry, so its payment is canceled and nothing is refunded. Answers
    the payment. Raises EventIgnored when the charge names no PaymentIntent, or
    names one not known here and no refund; PaymentNotKnownYet when it embeds
    refunds of a PaymentIntent not known here yet.
    """
    charge = event.stripe_object
    payment = refund_record_stripe_charge(
        charge=charge, at=event.occurred_at, api_version=event.payload.get("api_version")
    )
    if payment is None:
        embedded = charge.get("refunds")
        names_refunds = isinstance(embedded, dict) and bool(embedded.get("data"))
        raise _not_recorded(charge, what="charge", needed=names_refunds)
    return payment


@handles("charge.succeeded", "charge.captured", carries="charge")
def charge_changed(event: WebhookEvent) -> Payment:
    """
    Record what the charge proves (`payment_record_stripe_charge`): captured, the
    payment has succeeded with `amount_captured` received; authorized only, it
    awaits its capture until `capture_before`; and in any case the card's brand
    and last 4. Answers the payment. Raises EventIgnored when the charge names no
    PaymentIntent, PaymentNotKnownYet when its payment is not here yet.
    """
    charge = event.stripe_object
    payment = payment_record_stripe_charge(charge=charge, at=event.occurred_at)
    if payment is None:
        raise _not_recorded(charge, what="charge")
    return payment


@handles(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    carries="dispute",
)
def dispute_changed(event: WebhookEvent) -> Payment:
    """
    Record the dispute on its payment (`dispute_record_stripe_dispute`;
    Dispute.may_apply keeps a closed dispute closed). Answers the payment.
    Raises EventIgnored when the disputed charge names no PaymentIntent,
    PaymentNotKnownYet when its payment is not here yet.
    """
    stripe_dispute = event.stripe_object
    dispute = dispute_record_stripe_dispute(stripe_dispute=stripe_dispute, at=event.occurred_at)
    if dispute is None:
        raise _not_recorded(stripe_dispute, what="disputed charge")
    return dispute.payment


def _not_recorded(stripe_object: dict, *, what: str, needed: bool = True) -> Exception:
    """
    Why a service recorded nothing for `stripe_object`: it names no PaymentIntent
    (not a payment of this site: ignored), or its payment is not known here yet
    (PaymentNotKnownYet, so the apply job adopts the PaymentIntent; ignored when
    the object does not `need` the payment, having nothing to record on it).
    """
    intent_id = stripe_gateway.id_of(stripe_object.get("payment_intent"))
    if not intent_id:
        return EventIgnored(f"The {what} has no PaymentIntent: not a payment of this site.")
    if not needed:
        return EventIgnored(f"No payment for PaymentIntent {intent_id}, and the {what} names no refund.")
    return PaymentNotKnownYet(f"No payment for PaymentIntent {intent_id} yet.", intent_id=intent_id)
