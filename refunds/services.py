"""
Refund use cases. Every path that changes a refund's status or a payment's
refunded amount comes through here: the API, the admin, the webhook handlers
and the retry/reconcile commands.

Locks are always taken in one order, the payment row first and then its
refunds, so two writers on the same payment queue instead of deadlocking; and
no lock is ever held across a call to Stripe.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Sum

from payments.models import Payment
from refunds.models import Refund

# Our Refund.id travels to Stripe under this metadata key.
REFUND_ID_METADATA_KEY = "refund_id"


def stripe_id_of(value) -> str | None:
    """The id of a Stripe reference, whether Stripe sent an id or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def payment_sync_refunded_amount(*, payment: Payment) -> None:
    """
    Set the payment's refunded amount to the sum of its succeeded refunds and
    save it; a paid payment's status follows (see Payment.set_refunded_amount).
    The caller holds the payment's row lock. The database's check constraint
    refuses a total above the amount.
    """
    total = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(total=Sum("amount"))["total"] or 0
    payment.set_refunded_amount(total)
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])


def refund_record_stripe_refund(*, stripe_refund: dict) -> Refund | None:
    """
    Apply a Stripe Refund object (an API answer, an event's object, or one read
    back by a command) to our books, and answer our Refund; None when its
    payment is not known here yet.

    Finds our refund by its Stripe id, then by our id in its metadata; a refund
    the app never made (the Stripe dashboard) is recorded with no `created_by`.
    Its status only moves forward (Refund.apply_stripe_status), so the same
    object applied twice, or an older one after a newer one, changes nothing.
    Locks: the payment row, then the refund, in one transaction (the caller's,
    if it has one). Makes no network call.
    """
    refund_id = str(stripe_refund["id"])
    with transaction.atomic():
        refund = Refund.objects.filter(stripe_refund_id=refund_id).first() or _refund_from_metadata(stripe_refund)
        if refund is not None:
            payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
            refund = Refund.objects.select_for_update().get(pk=refund.pk)
        else:
            intent_id = stripe_id_of(stripe_refund.get("payment_intent"))
            payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
            if payment is None:
                return None
            # Under the payment's lock, so two deliveries of one new refund cannot both create it.
            refund = Refund.objects.filter(stripe_refund_id=refund_id).first() or Refund(
                payment=payment,
                amount=int(stripe_refund["amount"]),
                reason=_known_reason(stripe_refund.get("reason")),
                created_by=None,
            )
        if not refund.stripe_refund_id:
            refund.stripe_refund_id = refund_id
        refund.apply_stripe_status(
            str(stripe_refund["status"]),
            failure_reason=str(stripe_refund.get("failure_reason") or ""),
        )
        refund.save()
        payment_sync_refunded_amount(payment=payment)
    return refund


def _refund_from_metadata(stripe_refund: dict) -> Refund | None:
    our_id = (stripe_refund.get("metadata") or {}).get(REFUND_ID_METADATA_KEY)
    try:
        return Refund.objects.filter(pk=uuid.UUID(str(our_id))).first() if our_id else None
    except ValueError:
        return None


def _known_reason(reason) -> str:
    return reason if reason in Refund.Reason.values else ""
