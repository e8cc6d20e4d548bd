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
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core import stripe_gateway
from core.exceptions import (
    DomainError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NotRefundable,
    RefundAmountInvalid,
    RefundRefused,
)
from payments.currencies import format_amount
from payments.models import Payment
from payments.services import PAYMENT_ID_METADATA_KEY, request_fingerprint
from refunds.models import Refund

# Our Refund.id travels to Stripe under this metadata key.
REFUND_ID_METADATA_KEY = "refund_id"
# The dispute status after which Stripe has taken the money back for good.
DISPUTE_LOST = "lost"
# Stripe keeps idempotency keys for 24 hours; an hour's margin for slow calls and clocks.
STRIPE_IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=23)


def stripe_id_of(value) -> str | None:
    """The id of a Stripe reference, whether Stripe sent an id or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


# --- Issuing a refund -------------------------------------------------------


def refund_create(
    *,
    payment: Payment,
    amount: int | None,
    reason: str = "",
    note: str = "",
    created_by,
    idempotency_key: str,
) -> tuple[Refund, bool]:
    """
    Refund `amount` (all that is left when None) of `payment`; answers (refund,
    replayed). Used by the API and the admin.

    Three steps, no row lock ever held across the Stripe call: `refund_reserve`
    writes a pending refund under the payment's lock; `refund_submit` sends it
    to Stripe with the refund's own idempotency key and records the answer.

    Raises RefundAmountInvalid (400), NotRefundable (409), IdempotencyKeyReused
    (422), IdempotencyKeyInUse (409), RefundRefused (409, Stripe's definite no:
    the refund is kept as `failed`). An ambiguous outcome lets the gateway's
    StripeError through and leaves the refund pending: calling again with the
    same key resends it with the same Stripe key, so Stripe answers with the
    refund it may already have made and the money is never given back twice
    (`retry_refunds` does the same for requests nobody retries).
    """
    refund, replayed = refund_reserve(
        payment=payment,
        amount=amount,
        reason=reason,
        note=note,
        created_by=created_by,
        idempotency_key=idempotency_key,
    )
    if replayed:
        return refund, True
    return refund_submit(refund=refund), False


def refund_reserve(
    *,
    payment: Payment,
    amount: int | None,
    reason: str = "",
    note: str = "",
    created_by,
    idempotency_key: str,
) -> tuple[Refund, bool]:
    """
    Step (a): take the idempotency key and set the amount aside. Answers
    (refund, replayed); when not replayed the refund is pending, the caller
    holds its lease (`stripe_call_started_at`) and must call `refund_submit`.

    Locks: the payment row, then its refunds, in one short transaction. The
    amount is checked against what is left counting pending refunds too, so
    concurrent requests can never set aside more than was charged.
    """
    fingerprint = request_fingerprint(
        {
            "amount": amount,
            "reason": reason,
            "note": note,
            "created_by": str(created_by.pk) if created_by is not None else None,
        }
    )
    now = timezone.now()
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        # Under the payment's lock: a concurrent request with this key waits
        # above, then sees the refund this one wrote.
        existing = payment.refunds.select_for_update().filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _refund_reclaim(refund=existing, fingerprint=fingerprint, now=now)

        if amount is not None and amount <= 0:
            raise RefundAmountInvalid("The amount must be a positive number of minor units.")
        if reason not in ("", *Refund.Reason.values):
            raise DomainError(f"Unknown reason {reason!r}: one of {', '.join(Refund.Reason.values)}, or blank.")
        if payment.status not in Payment.REFUNDABLE:
            raise NotRefundable(f"A payment that is {payment.status} cannot be refunded.")
        if payment.disputes.filter(status=DISPUTE_LOST).exists():
            raise NotRefundable("The payment's dispute was lost: Stripe has already given the money back.")
        left = payment_unreserved_amount(payment=payment)
        if left <= 0:
            raise NotRefundable("Nothing is left to refund: the whole amount is refunded or being refunded.")
        if amount is None:
            amount = left
        if amount > left:
            raise RefundAmountInvalid(
                f"The amount exceeds what is left to refund: {format_amount(left, payment.currency)} ({left}) is left.",
                refundable_amount=left,
            )
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            reason=reason,
            note=note,
            created_by=created_by,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            stripe_call_started_at=now,
        )
    return refund, False


def _refund_reclaim(*, refund: Refund, fingerprint: str, now) -> tuple[Refund, bool]:
    """The key was used before on this payment: replay, refuse, or resume that refund."""
    if refund.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request. Use a new key for a new refund."
        )
    if refund.status == Refund.Status.FAILED and not refund.stripe_refund_id:
        raise _refused(refund)
    if refund.stripe_refund_id or refund.status != Refund.Status.PENDING:
        return refund, True
    lease = timedelta(seconds=settings.REFUND_CREATE_LEASE_SECONDS)
    if refund.stripe_call_started_at and now - refund.stripe_call_started_at < lease:
        raise IdempotencyKeyInUse("A request with this Idempotency-Key is still being processed. Retry shortly.")
    refund.stripe_call_started_at = now
    refund.save(update_fields=["stripe_call_started_at", "updated_at"])
    return refund, False


def payment_unreserved_amount(*, payment: Payment) -> int:
    """What may still be refunded: the amount less every refund succeeded or still under way."""
    held = payment.refunds.filter(status__in=Refund.HOLDING).aggregate(total=Sum("amount"))["total"] or 0
    return payment.amount - held


def refund_submit(*, refund: Refund) -> Refund:
    """
    Steps (b) and (c): send the pending refund to Stripe, outside any
    transaction, with its own idempotency key (`refund.stripe_idempotency_key`)
    and our ids in its metadata; then record the answer.

    - Stripe's refund: applied by `refund_record_stripe_refund` (a succeeded one
      moves the payment's refunded amount and status).
    - A definite refusal: the refund becomes `failed`, its amount is free
      again, and RefundRefused is raised.
    - No definite answer: the refund stays pending and the gateway's error is
      raised. Sending it again is always safe: the same key gets Stripe's
      first answer instead of a second refund.

    Stripe forgets an idempotency key after 24 hours, so a refund older than
    that is first looked for at Stripe by our id in its metadata, and recorded
    if Stripe made it.
    """
    payment = refund.payment
    if timezone.now() - refund.created_at > STRIPE_IDEMPOTENCY_KEY_LIFETIME:
        made = stripe_gateway.refund_list(payment_intent_id=payment.stripe_payment_intent_id)
        for stripe_refund in made:
            if (stripe_refund.get("metadata") or {}).get(REFUND_ID_METADATA_KEY) == str(refund.id):
                return refund_record_stripe_refund(stripe_refund=stripe_refund)
    try:
        answer = stripe_gateway.refund_create(
            payment_intent_id=payment.stripe_payment_intent_id,
            amount=refund.amount,
            idempotency_key=refund.stripe_idempotency_key,
            metadata={REFUND_ID_METADATA_KEY: str(refund.id), PAYMENT_ID_METADATA_KEY: str(payment.id)},
            reason=refund.reason,
        )
    except stripe_gateway.StripeRefused as exc:
        raise _refused(_refund_record_refusal(refund=refund, message=exc.message)) from exc
    except stripe_gateway.StripeError:
        # Let a retry with the same key in at once rather than after the lease.
        Refund.objects.filter(pk=refund.pk).update(stripe_call_started_at=None)
        raise
    return refund_record_stripe_refund(stripe_refund=answer)


def _refund_record_refusal(*, refund: Refund, message: str) -> Refund:
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        # Only a refund Stripe never made can be refused: one it made meanwhile stands.
        if refund.stripe_refund_id is None:
            refund.apply_stripe_status(Refund.Status.FAILED, failure_reason=message)
            refund.stripe_call_started_at = None
            refund.save()
            payment_sync_refunded_amount(payment=payment)
    return refund


def _refused(refund: Refund) -> RefundRefused:
    return RefundRefused(
        f"Stripe refused the refund: {refund.failure_reason}",
        refund_id=str(refund.id),
    )


def refund_retry(*, refund: Refund) -> Refund:
    """
    Finish a refund left pending without Stripe's answer (a timeout, a 5xx, a
    process that died after `refund_reserve`) by sending it again with its
    original idempotency key (see `refund_submit`). Used by `retry_refunds`.
    Raises like `refund_submit`; changes nothing on a refund that is no longer
    pending without a Stripe id.

    Locks: the payment row, then the refund, to take the refund's lease before
    sending, as a request resending its key does; a refund whose lease is live
    (a request, or another run of `retry_refunds` on another server, is sending
    it) is answered unchanged. So it is sent by one process at a time, and past
    Stripe's 24 hours of idempotency two runs cannot both make it.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.REFUND_CREATE_LEASE_SECONDS)
    with transaction.atomic():
        Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund.pk)
        if refund.stripe_refund_id or refund.status != Refund.Status.PENDING:
            return refund
        if refund.stripe_call_started_at and now - refund.stripe_call_started_at < lease:
            return refund
        refund.stripe_call_started_at = now
        refund.save(update_fields=["stripe_call_started_at", "updated_at"])
    return refund_submit(refund=refund)


def refunds_awaiting_stripe():
    """
    Refunds set aside here that Stripe never answered for, oldest first; those a
    request is sending right now (their lease is live) are left to it. A lease
    outlives a crashed request only by REFUND_CREATE_LEASE_SECONDS.
    """
    lease_expired = timezone.now() - timedelta(seconds=settings.REFUND_CREATE_LEASE_SECONDS)
    return (
        Refund.objects.filter(status=Refund.Status.PENDING, stripe_refund_id__isnull=True)
        .filter(Q(stripe_call_started_at__isnull=True) | Q(stripe_call_started_at__lt=lease_expired))
        .order_by("created_at")
    )


# --- Recording Stripe's state -----------------------------------------------


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
