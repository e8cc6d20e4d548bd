"""
One handler per Stripe event type, found in `HANDLERS` (filled by `@handles`).

A handler gets the stored event, applies its object through the payments and
refunds services (which hold the order rules) and answers the payment it
touched, or None. It runs inside the event's transaction and a savepoint of its
own: raising rolls back everything it did. It never calls Stripe: Stripe is
waiting for our answer, and the event already carries what we need.

Two outcomes besides success:
- `EventIgnored`: the event is about something that is not ours to record (a
  charge made without a PaymentIntent); the event is stored as `ignored`.
- `PaymentNotKnownYet`: a refund or dispute of a PaymentIntent we have not seen
  yet. The refund or dispute object does not carry what a payment needs (its
  amount), so we cannot create one; the event is stored as `failed` and answered
  500, so Stripe delivers it again later, by when the PaymentIntent's own event
  has created the payment (`process_webhooks --failed` does the same at once).
"""

from __future__ import annotations

from collections.abc import Callable

from payments.models import Dispute, Payment
from payments.services import payment_for_intent, payment_record_intent
from refunds.services import refund_record_stripe_refund, stripe_id_of
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
    """The event needs a payment that no event has created here yet: Stripe should deliver it again."""


def handles(*event_types: str, carries: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `event_types`, whose object is a `carries`."""

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            if event_type in HANDLERS:
                raise ValueError(f"{event_type} already has a handler: {HANDLERS[event_type].__name__}")
            HANDLERS[event_type] = handler
            CARRIES[event_type] = carries
        return handler

    return register


def object_problem(event_type: str, stripe_object: dict) -> str | None:
    """What is missing from, or of the wrong type in, the object of an event we handle; None if it reads."""
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
    """Move the payment to the PaymentIntent's status, if Payment.may_apply allows; adopt unknown intents."""
    intent = event.stripe_object
    payment = payment_for_intent(intent=intent, adopt=True)
    payment_record_intent(
        payment=payment,
        intent=intent,
        at=event.occurred_at,
        # The intent is back in requires_payment_method after a failure; the event type says why.
        payment_failed=event.type == "payment_intent.payment_failed",
    )
    return payment


@handles("refund.created", "refund.updated", "refund.failed", "charge.refund.updated", carries="refund")
def refund_changed(event: WebhookEvent) -> Payment:
    """Record the refund (a dashboard refund becomes one with no creator); its payment's balance follows."""
    return _record_refund(event.stripe_object)


@handles("charge.refunded", carries="charge")
def charge_refunded(event: WebhookEvent) -> Payment | None:
    """
    A charge was refunded. A current charge no longer embeds its refunds (the
    `refund.*` events name them), so this event can only record the refunds an
    older API version embeds; what it proves in any version is that the charge
    was captured, so its payment has succeeded.
    """
    charge = event.stripe_object
    intent_id = stripe_id_of(charge.get("payment_intent"))
    embedded = charge.get("refunds")
    refunds = (embedded.get("data") or []) if isinstance(embedded, dict) else []
    if not intent_id:
        raise EventIgnored("The charge has no PaymentIntent: not a payment of this site.")
    payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
    if payment is None:
        if refunds:
            raise PaymentNotKnownYet(f"No payment for PaymentIntent {intent_id} yet.")
        raise EventIgnored(f"No payment for PaymentIntent {intent_id}, and the charge names no refund.")
    if charge.get("captured") and charge.get("status") == "succeeded":
        payment.apply_stripe_status(Payment.Status.SUCCEEDED, at=event.occurred_at)
        payment.save()
    for refund in refunds:
        # An embedded refund may leave its PaymentIntent out; it is the charge's.
        _record_refund({**refund, "payment_intent": stripe_id_of(refund.get("payment_intent")) or intent_id})
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
    """Record the dispute on its payment; Dispute.may_apply keeps a closed dispute closed."""
    stripe_dispute = event.stripe_object
    intent_id = stripe_id_of(stripe_dispute.get("payment_intent"))
    if not intent_id:
        raise EventIgnored("The disputed charge has no PaymentIntent: not a payment of this site.")
    payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
    if payment is None:
        raise PaymentNotKnownYet(f"No payment for PaymentIntent {intent_id} yet.")
    # Under the payment's lock, so two deliveries of one new dispute cannot both create it.
    dispute = Dispute.objects.select_for_update().filter(stripe_dispute_id=stripe_dispute["id"]).first()
    if dispute is None:
        dispute = Dispute(
            stripe_dispute_id=stripe_dispute["id"],
            payment=payment,
            amount=int(stripe_dispute["amount"]),
            created_at=event.occurred_at,
        )
    dispute.apply_stripe_dispute(stripe_dispute, at=event.occurred_at)
    dispute.save()
    return payment


def _record_refund(stripe_refund: dict) -> Payment:
    refund = refund_record_stripe_refund(stripe_refund=stripe_refund)
    if refund is not None:
        return refund.payment
    intent_id = stripe_id_of(stripe_refund.get("payment_intent"))
    if not intent_id:
        raise EventIgnored("The refund's charge has no PaymentIntent: not a payment of this site.")
    raise PaymentNotKnownYet(f"No payment for PaymentIntent {intent_id} yet.")
