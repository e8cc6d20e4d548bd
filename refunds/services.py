"""
Refund use cases. Every path that changes a refund's status or a payment's
refunded amount comes through here: the API (refunds.api), the support desk
(backoffice), the webhook handlers and the `retry_refunds` / `reconcile_stripe`
commands.

Locks are always taken in one order, the payment row first and then its
refunds, so two writers on the same payment queue instead of deadlocking; and
no lock is ever held across a call to Stripe. Amounts are integers in the
payment currency's minor unit throughout; "refundable" always means what a
new refund may still take (`payment_refundable_amount`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from core.exceptions import (
    DomainError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NotRefundable,
    RefundAmountInvalid,
    RefundRefused,
)
from core.idempotency import (
    PAYMENT_ID_METADATA_KEY,
    REFUND_ID_METADATA_KEY,
    STRIPE_IDEMPOTENCY_KEY_LIFETIME,
    request_fingerprint,
)
from core.leases import lease_is_live, lease_not_live
from payments.currencies import format_amount
from payments.models import Dispute, Payment
from refunds.models import Refund

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
    Refund `amount` minor units (all that is refundable when None) of
    `payment`; answers (refund, replayed), `replayed` True when the key had
    already made this refund (answered as it is). `reason` is Stripe's (a
    Refund.Reason value, or blank), `note` is internal, `created_by` the staff
    user (or None), `idempotency_key` the caller's key (1-255 characters). Used
    by the API and the support desk.

    Three steps, as the README's "Refunds" tells them, and no row lock ever held
    across the Stripe call: Reserve (`refund_reserve`: a pending refund written
    under the payment's lock), Send and Record (`refund_submit`: to Stripe with
    the refund's own idempotency key, then its answer applied).

    Raises RefundAmountInvalid (400), DomainError (400, unknown reason),
    NotRefundable (409), IdempotencyKeyReused (422), IdempotencyKeyInUse (409),
    RefundRefused (409, Stripe's definite no: the refund is kept as `failed`).
    An ambiguous outcome lets the gateway's StripeServerError /
    StripeUnavailable through and leaves the refund pending, its amount still
    held: calling again with the same key resends it with the same Stripe key,
    so Stripe answers with the refund it may already have made and the money is
    never given back twice (`retry_refunds` does the same for requests nobody
    retries).
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
    Step Reserve: take the idempotency key and set the amount aside (arguments
    as `refund_create`). Answers (refund, replayed); when not replayed the
    refund is pending, the caller holds its lease (`stripe_call_started_at`,
    REFUND_CREATE_LEASE_SECONDS) and must call `refund_submit`.

    Raises what `refund_create` raises before Stripe is called: RefundAmountInvalid
    (its `extra` carries `refundable_amount`), DomainError, NotRefundable (not
    paid, a lost dispute, nothing refundable), IdempotencyKeyReused,
    IdempotencyKeyInUse, and RefundRefused for a key whose refund Stripe
    refused. Nothing is written when it raises.

    Locks: the payment row, then its refunds, in one short transaction. The
    amount is checked against the refundable amount, which counts refunds
    still under way, so concurrent requests can never set aside more than was
    charged. Safe to retry: under the same key it replays, refuses or resumes
    the refund it made, never a second one.
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
        if payment.disputes.filter(status=Dispute.Status.LOST).exists():
            raise NotRefundable("The payment's dispute was lost: Stripe has already given the money back.")
        refundable = payment_refundable_amount(payment=payment)
        if refundable <= 0:
            raise NotRefundable("Nothing is left to refund: the whole amount is refunded or being refunded.")
        if amount is None:
            amount = refundable
        if amount > refundable:
            left = f"{format_amount(refundable, payment.currency)} ({refundable})"
            raise RefundAmountInvalid(
                f"The amount exceeds what is left to refund: {left} is left.",
                refundable_amount=refundable,
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
    if lease_is_live(refund.stripe_call_started_at, seconds=settings.REFUND_CREATE_LEASE_SECONDS, now=now):
        raise IdempotencyKeyInUse("A request with this Idempotency-Key is still being processed. Retry shortly.")
    refund.stripe_call_started_at = now
    refund.save(update_fields=["stripe_call_started_at", "updated_at"])
    return refund, False


def payment_refundable_amount(*, payment: Payment) -> int:
    """
    The payment's refundable amount, in minor units: what a new refund may still
    take, the amount less every refund succeeded or still under way
    (Refund.HOLDING). Not floored at 0. Reads the refunds without locking them:
    hold the payment's row lock for an answer that cannot change under you.
    """
    held = payment.refunds.filter(status__in=Refund.HOLDING).aggregate(total=Sum("amount"))["total"] or 0
    return payment.amount - held


def refund_submit(*, refund: Refund) -> Refund:
    """
    Steps Send and Record: send the pending refund to Stripe, outside any
    transaction, with its own idempotency key (`refund.stripe_idempotency_key`)
    and our ids in its metadata; then record the answer. Answers the refund as
    recorded. The caller holds the refund's lease (`refund_reserve`,
    `refund_retry`).

    - Stripe's refund: applied by `refund_record_stripe_refund` (a succeeded one
      moves the payment's refunded amount and status).
    - A definite refusal: the refund becomes `failed`, its amount is free
      again, and RefundRefused is raised.
    - No definite answer: the refund stays pending, its lease is dropped (a
      retry may come in at once) and the gateway's StripeServerError /
      StripeUnavailable is raised. Sending it again is always safe: the same
      key gets Stripe's first answer instead of a second refund.

    Locks: none during the Stripe call; the payment row, then the refund, to
    record the answer.

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
    with transaction.atomic():
        Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund.pk)
        if refund.stripe_refund_id or refund.status != Refund.Status.PENDING:
            return refund
        if lease_is_live(refund.stripe_call_started_at, seconds=settings.REFUND_CREATE_LEASE_SECONDS, now=now):
            return refund
        refund.stripe_call_started_at = now
        refund.save(update_fields=["stripe_call_started_at", "updated_at"])
    return refund_submit(refund=refund)


def refunds_awaiting_stripe():
    """
    A queryset of the refunds set aside here that Stripe never answered for,
    oldest first; those a request is sending right now (their lease is live)
    are left to it. A lease outlives a crashed request only by
    REFUND_CREATE_LEASE_SECONDS. Locks nothing, reads only: `refund_retry`
    re-reads each under its lock.
    """
    lease_free = lease_not_live(
        "stripe_call_started_at", seconds=settings.REFUND_CREATE_LEASE_SECONDS, now=timezone.now()
    )
    pending = Refund.objects.filter(status=Refund.Status.PENDING, stripe_refund_id__isnull=True)
    return pending.filter(lease_free).order_by("created_at")


# --- Recording Stripe's state -----------------------------------------------


def payment_sync_refunded_amount(*, payment: Payment) -> None:
    """
    Set the payment's refunded amount to the sum of its succeeded refunds (minor
    units) and save it; a paid payment's status follows (see
    Payment.set_refunded_amount). The caller holds the payment's row lock. The
    database's check constraint refuses a total above the amount
    (IntegrityError). No network call; idempotent.
    """
    total = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(total=Sum("amount"))["total"] or 0
    payment.set_refunded_amount(total)
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])


def refund_record_stripe_refund(*, stripe_refund: dict) -> Refund | None:
    """
    Apply a Stripe Refund object (a dict: `id`, `status`, `amount` in minor
    units, `payment_intent` as an id or an expanded object, optional
    `metadata`, `reason`, `failure_reason`; an API answer, an event's object,
    or one read back by a command) to our books, and answer our Refund; None
    when its payment is not known here yet (nothing is written).

    Finds our refund by its Stripe id, then by our id in its metadata; a refund
    the app never made (the Stripe dashboard) is recorded with no `created_by`.
    Its status only moves forward (Refund.apply_stripe_status), so the same
    object applied twice, or an older one after a newer one, changes nothing.
    Raises ValueError for a refund status Stripe does not have (nothing is
    written). Locks: the payment row, then the refund, in one transaction (the
    caller's, if it has one). Makes no network call. Safe to repeat.
    """
    refund_id = str(stripe_refund["id"])
    with transaction.atomic():
        refund = Refund.objects.filter(stripe_refund_id=refund_id).first() or _refund_from_metadata(stripe_refund)
        if refund is not None:
            payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
            refund = Refund.objects.select_for_update().get(pk=refund.pk)
        else:
            intent_id = stripe_gateway.id_of(stripe_refund.get("payment_intent"))
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


def refund_record_stripe_charge(*, charge: dict, at: datetime) -> Payment | None:
    """
    Record what a refunded Stripe Charge (a `charge.refunded` event's object: a
    dict with `id`, `payment_intent` as an id or an expanded object, `captured`,
    `status`, and in older API versions its refunds embedded under
    `refunds.data`) proves: that its payment was captured (news of `at`, the
    event's `created`), and each embedded refund (as
    `refund_record_stripe_refund`). A current charge no longer embeds its
    refunds; the `refund.*` events name them.

    Answers the payment; None when the charge names no PaymentIntent or its
    payment is not known here (nothing is written). Raises ValueError for an
    embedded refund with a status Stripe does not have (nothing is written).
    Locks: the payment row, then its refunds, in one transaction (the caller's,
    if it has one). No network call. Safe to repeat: a paid payment stays paid,
    and refunds only move forward.
    """
    intent_id = stripe_gateway.id_of(charge.get("payment_intent"))
    if not intent_id:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
        if payment is None:
            return None
        if charge.get("captured") and charge.get("status") == "succeeded":
            payment.apply_stripe_status(Payment.Status.SUCCEEDED, at=at)
            payment.save()
        embedded = charge.get("refunds")
        for stripe_refund in (embedded.get("data") or []) if isinstance(embedded, dict) else []:
            # An embedded refund may leave its PaymentIntent out; it is the charge's.
            payment_intent = stripe_gateway.id_of(stripe_refund.get("payment_intent")) or intent_id
            refund_record_stripe_refund(stripe_refund={**stripe_refund, "payment_intent": payment_intent})
    return payment
