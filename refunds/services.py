"""
Refund use cases. Every path that changes a refund's status or a payment's
refunded amount comes through here: the API (refunds.api), the support desk
(backoffice), the webhook handlers and the `retry_refunds` / `reconcile_stripe`
commands.

Locks are always taken in one order, the payment row first and then its
refunds, so two writers on the same payment queue instead of deadlocking; and
no lock is ever held across a call to Stripe. Amounts are integers in the
payment currency's minor unit throughout; "refundable" always means what a
new refund may still take (`payment_refundable_amount`): what was received
(captured), never more.

A release of money that was never captured (a void, an expired authorization,
the uncaptured rest of a partial capture) is never a refund, although API
versions before 2025-03-31 tell it with a Refund object: `_is_release` tells
them apart, and such a Refund is never recorded or counted.
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
from core.jobs import job_defer_in_transaction
from core.leases import lease_is_live, lease_not_live
from payments.currencies import format_amount
from payments.models import Dispute, Payment
from payments.services import payment_record_stripe_charge, stripe_timestamp
from refunds.models import Refund

# The reason Stripe gives the Refund with which older API versions release an expired authorization.
EXPIRED_UNCAPTURED_CHARGE = "expired_uncaptured_charge"
# From this API version on, Stripe releases uncaptured money without any Refund object.
RELEASES_WITHOUT_REFUND_SINCE = "2025-03-31"


class CaptureNotKnownYet(Exception):
    """
    A refund Stripe made (not ours) of a payment not yet known here to be
    captured: whether it gives money back or releases an authorization cannot be
    told until the capture's (or the void's) news has arrived.
    """


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
        if payment.status == Payment.Status.REQUIRES_CAPTURE:
            raise NotRefundable("The payment is only authorized: nothing was taken. Capture it, or void it instead.")
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
    take, the amount received (captured: after a partial capture, less than the
    amount) less every refund succeeded or still under way (Refund.HOLDING). Not
    floored at 0. Reads the refunds without locking them: hold the payment's row
    lock for an answer that cannot change under you.
    """
    held = payment.refunds.filter(status__in=Refund.HOLDING).aggregate(total=Sum("amount"))["total"] or 0
    return payment.amount_received - held


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
            if stripe_refund_is_for(refund, stripe_refund=stripe_refund):
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
    Payment.set_refunded_amount). A total above what was received never fails:
    the refunded amount stops there and `books_mismatch` says so. The caller
    holds the payment's row lock. No network call; idempotent.
    """
    total = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(total=Sum("amount"))["total"] or 0
    at_stripe = payment.refunds.filter(status__in=Refund.HOLDING, stripe_refund_id__isnull=False)
    payment.set_refunded_amount(total, held_at_stripe=at_stripe.aggregate(total=Sum("amount"))["total"] or 0)
    _keep_reservations_within_received(payment)
    payment.save(
        update_fields=["refunded_amount", "amount", "amount_received", "status", "books_mismatch", "updated_at"]
    )


# What a released refund says until Stripe has been asked about it, and once it has.
RELEASED = "Released: refunds made at Stripe took this amount. Stripe is being asked whether it made this one."
RELEASED_NOT_MADE = "Released: refunds made at Stripe took this amount, and Stripe never made this one."


def _keep_reservations_within_received(payment: Payment) -> None:
    """
    Hold the invariant `pending + requires_action + succeeded <= amount_received`
    once Stripe's own refunds are recorded (a full refund made in the dashboard
    while ours waits for Stripe's answer): Stripe's truth wins, so the refunds
    set aside here that Stripe never answered for are released, newest first,
    until the rest fits (Refund.release: canceled, `stripe_check_due`), and each
    gets a job that asks Stripe about it at once (`refund_settle_released`).
    Stripe refuses refunds beyond what a charge has left, so a released refund
    was not made there; if it was after all, Stripe's news of it binds it again.
    Stripe's own refunds alone above what was received do not fit the books:
    `books_mismatch` says so, for staff. The caller holds the payment's row lock.
    """
    holding = payment.refunds.filter(status__in=Refund.HOLDING)
    excess = (holding.aggregate(total=Sum("amount"))["total"] or 0) - payment.amount_received
    if excess <= 0:
        return
    from refunds.tasks import settle_released_refund

    unanswered = holding.select_for_update().filter(status=Refund.Status.PENDING, stripe_refund_id__isnull=True)
    for reservation in unanswered.order_by("-created_at", "-id"):
        if excess <= 0:
            break
        reservation.release(reason=RELEASED)
        reservation.save(update_fields=["status", "failure_reason", "stripe_check_due", "updated_at"])
        # In this transaction (a worker's app would commit it apart, before the release).
        job_defer_in_transaction(
            settle_released_refund.configure(lock=payment.stripe_payment_intent_id or str(payment.pk)),
            refund_id=str(reservation.pk),
        )
        excess -= reservation.amount
    if excess > 0 and not payment.books_mismatch:
        payment._record_mismatch(
            "refunds held above received",
            f"Stripe's refunds under way or succeeded add up to {excess} more than the {payment.amount_received} "
            "received.",
        )


class RefundStillBeingSent(Exception):
    """A released refund's own request is still waiting for Stripe: ask again once its lease has run out."""


def refund_settle_released(*, refund: Refund) -> Refund:
    """
    Ask Stripe about a refund released by `_keep_reservations_within_received`
    (`stripe_check_due`) and settle it: found among its PaymentIntent's refunds
    at Stripe (`stripe_refund_is_for`), it takes Stripe's status (succeeded,
    failed, canceled...; a succeeded one that no longer fits marks the books);
    not there, it stays canceled for good (RELEASED_NOT_MADE) and is never sent
    again. Answers the refund as recorded; unchanged when no check is due.

    Raises RefundStillBeingSent while the refund's own request may still reach
    Stripe (its lease is live), and the gateway's StripeError when Stripe does
    not answer: the job retries later. Locks: none during the Stripe read; the
    payment row, then the refund, to record. Side effects: one list read at
    Stripe. Safe to repeat.
    """
    refund = Refund.objects.select_related("payment").get(pk=refund.pk)
    if not refund.stripe_check_due:
        return refund
    if lease_is_live(refund.stripe_call_started_at, seconds=settings.REFUND_CREATE_LEASE_SECONDS, now=timezone.now()):
        raise RefundStillBeingSent(f"Refund {refund.pk} is still being sent to Stripe.")
    made = stripe_gateway.refund_list(payment_intent_id=refund.payment.stripe_payment_intent_id)
    found = next((r for r in made if stripe_refund_is_for(refund, stripe_refund=r)), None)
    if found is not None:
        return refund_record_stripe_refund(stripe_refund=found) or refund
    with transaction.atomic():
        Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.stripe_check_due and refund.stripe_refund_id is None:
            refund.stripe_check_due = False
            refund.failure_reason = RELEASED_NOT_MADE
            refund.save(update_fields=["stripe_check_due", "failure_reason", "updated_at"])
    return refund


def refunds_due_a_stripe_check():
    """A queryset of the released refunds Stripe has not been asked about yet, oldest first. Reads only."""
    return Refund.objects.filter(stripe_check_due=True).order_by("created_at")


def refund_record_stripe_refund(
    *, stripe_refund: dict, charge: dict | None = None, api_version: str | None = stripe_gateway.API_VERSION
) -> Refund | None:
    """
    Apply a Stripe Refund object (a dict: `id`, `status`, `amount` in minor
    units, `payment_intent` as an id or an expanded object, optional
    `metadata`, `reason`, `failure_reason`, `created`; an API answer, an event's
    object, or one read back by a command) to our books, and answer our Refund;
    None when nothing is recorded as a refund: its payment is not known here yet,
    or it only released money that was never captured (`_is_release`: `charge`,
    the refund's charge when the caller has it, and `api_version`, the version
    the object is written in, an event's or by default our own reads', help
    tell). A release by expiry (`expired_uncaptured_charge`) cancels the
    payment, which received nothing.

    Finds our refund by its Stripe id, then by our id in its metadata, which is
    believed only for a refund of ours with no Stripe refund yet, of the same
    PaymentIntent and amount (`stripe_refund_is_for`: metadata can be copied);
    a refund the app never made (the Stripe dashboard) is recorded with no
    `created_by`, on the payment of its PaymentIntent.
    Its status only moves forward (Refund.apply_stripe_status), so the same
    object applied twice, or an older one after a newer one, changes nothing.
    Raises ValueError for a refund status Stripe does not have, CaptureNotKnownYet
    for a refund not ours of a manual-capture payment not yet known to be
    captured (nothing is written: deliver it again later). Locks: the payment
    row, then the refund, in one transaction (the caller's, if it has one).
    Makes no network call. Safe to repeat.
    """
    refund_id = str(stripe_refund["id"])
    with transaction.atomic():
        refund = Refund.objects.filter(stripe_refund_id=refund_id).first() or _refund_from_metadata(
            stripe_refund, charge=charge
        )
        if refund is not None:
            payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
            refund = Refund.objects.select_for_update().get(pk=refund.pk)
        else:
            intent_id = refund_payment_intent_id(stripe_refund, charge=charge)
            if not intent_id:
                # (Filtering on None would match the payments whose PaymentIntent is not made yet.)
                return None
            payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
            if payment is None:
                return None
            # Under the payment's lock, so two deliveries of one new refund cannot both create it.
            refund = Refund.objects.filter(stripe_refund_id=refund_id).first()
            if refund is None:
                if _is_release(stripe_refund=stripe_refund, payment=payment, charge=charge, api_version=api_version):
                    _record_release(stripe_refund=stripe_refund, payment=payment)
                    return None
                refund = Refund(
                    payment=payment,
                    amount=int(stripe_refund["amount"]),
                    reason=_known_reason(stripe_refund.get("reason")),
                    created_by=None,
                    # When Stripe made it, on Stripe's clock.
                    created_at=stripe_timestamp(stripe_refund.get("created")),
                )
        if not refund.stripe_refund_id:
            # Ours, answered at last: what it was without Stripe's answer gives way to Stripe's.
            refund.bind_stripe_refund(refund_id)
        refund.apply_stripe_status(
            str(stripe_refund["status"]),
            failure_reason=str(stripe_refund.get("failure_reason") or ""),
        )
        refund.save()
        payment_sync_refunded_amount(payment=payment)
    return refund


def _is_release(*, stripe_refund: dict, payment: Payment, charge: dict | None, api_version: str | None) -> bool:
    """
    Whether a Refund object Stripe made, and the app did not, only releases money
    that was never captured. API versions before 2025-03-31 make one when an
    authorization is voided (its charge uncaptured) or expires (reason
    `expired_uncaptured_charge`), and for the rest of a partial capture; later
    versions make none, so there every Refund object gives money back. An
    object of unknown version (`api_version` None) is read as an older one. The
    payment is read under its row lock.

    Raises CaptureNotKnownYet when it cannot be told yet: in an older version, a
    manual-capture payment whose capture or void has not been recorded.
    """
    if stripe_refund.get("reason") == EXPIRED_UNCAPTURED_CHARGE:
        return True
    if charge is not None and charge.get("captured") is False:
        return True
    if api_version and api_version[:10] >= RELEASES_WITHOUT_REFUND_SINCE:
        return False
    if payment.stripe_release_refund_id:
        return payment.stripe_release_refund_id == str(stripe_refund["id"])
    if payment.status == Payment.Status.CANCELED:
        # A canceled PaymentIntent never captured anything: there is nothing to refund.
        return True
    if payment.status in Payment.PAID:
        # The first refund of exactly the uncaptured rest, made by Stripe, is that rest's release.
        return 0 < payment.uncaptured_amount == int(stripe_refund["amount"])
    if payment.capture_method == Payment.CaptureMethod.AUTOMATIC:
        # Captured with its charge: any refund gives money back.
        return False
    raise CaptureNotKnownYet(
        f"Refund {stripe_refund['id']}: payment {payment.pk} is not known to be captured yet; "
        "whether it gives money back or releases the authorization is told once it is."
    )


def _record_release(*, stripe_refund: dict, payment: Payment) -> None:
    """A release is not a refund: an expiry cancels the payment, a partial capture's release is remembered."""
    if stripe_refund.get("reason") == EXPIRED_UNCAPTURED_CHARGE:
        payment.apply_stripe_status(
            Payment.Status.CANCELED, at=stripe_gateway.answered_at(stripe_refund), amount_received=0
        )
        payment.save()
    elif payment.status in Payment.PAID and not payment.stripe_release_refund_id:
        payment.stripe_release_refund_id = str(stripe_refund["id"])
        payment.save(update_fields=["stripe_release_refund_id", "updated_at"])


def _refund_from_metadata(stripe_refund: dict, *, charge: dict | None = None) -> Refund | None:
    """
    Our refund that a Stripe refund not recorded yet is the answer for, found
    by our id in its metadata (`stripe_refund_is_for`); None when there is none.
    """
    our_id = (stripe_refund.get("metadata") or {}).get(REFUND_ID_METADATA_KEY)
    try:
        refund = Refund.objects.select_related("payment").filter(pk=uuid.UUID(str(our_id))).first() if our_id else None
    except ValueError:
        return None
    if refund is None or not stripe_refund_is_for(refund, stripe_refund=stripe_refund, charge=charge):
        return None
    return refund


def stripe_refund_is_for(refund: Refund, *, stripe_refund: dict, charge: dict | None = None) -> bool:
    """
    Whether `stripe_refund` (a Stripe Refund object) may be recorded as our
    `refund`'s: its metadata names our refund, and since metadata can be copied
    (the dashboard, a script), that is believed only while our refund has no
    Stripe refund of its own yet (or has this one), for a Stripe refund of our
    payment's PaymentIntent (its `payment_intent`, or its charge's) and of
    the same amount. Anything else is another refund, recorded on its own.
    Reads `refund.payment`; no lock, no write.
    """
    if (stripe_refund.get("metadata") or {}).get(REFUND_ID_METADATA_KEY) != str(refund.id):
        return False
    if refund.stripe_refund_id is not None:
        return refund.stripe_refund_id == str(stripe_refund.get("id"))
    intent_id = refund_payment_intent_id(stripe_refund, charge=charge)
    return (
        bool(intent_id)
        and intent_id == refund.payment.stripe_payment_intent_id
        and (stripe_refund.get("amount") == refund.amount)
    )


def refund_payment_intent_id(stripe_refund: dict, *, charge: dict | None = None) -> str | None:
    """
    The PaymentIntent a Stripe refund gives money back from: its own
    `payment_intent`, else that of its charge (`charge`, expanded in the refund
    or given by the caller); None when neither says. Pure.
    """
    named = stripe_gateway.id_of(stripe_refund.get("payment_intent"))
    if named:
        return named
    for source in (stripe_refund.get("charge"), charge):
        if isinstance(source, dict) and stripe_gateway.id_of(source.get("payment_intent")):
            return stripe_gateway.id_of(source.get("payment_intent"))
    return None


def _known_reason(reason) -> str:
    return reason if reason in Refund.Reason.values else ""


def refund_record_stripe_charge(*, charge: dict, at: datetime, api_version: str | None = None) -> Payment | None:
    """
    Record what a refunded Stripe Charge (a `charge.refunded` event's object: a
    dict with `id`, `payment_intent` as an id or an expanded object, `captured`,
    `status`, `amount`, `amount_captured`, and in older API versions its refunds
    embedded under `refunds.data`) proves, as news of `at` (the event's
    `created`): what `payments.services.payment_record_stripe_charge` records
    (captured: the payment succeeded; an older API's void or expiry of an
    uncaptured charge: canceled, nothing received), and each embedded refund
    (as `refund_record_stripe_refund`, in the event's `api_version`). A current
    charge no longer embeds its refunds; the `refund.*` events name them.

    Money never captured is never a refund: the refunds embedded in an
    uncaptured charge, and, after a partial capture, Stripe's refund of the
    uncaptured rest (the earliest one not ours of exactly that amount), are not
    recorded.

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
        payment = payment_record_stripe_charge(charge=charge, at=at)
        if payment is None:
            return None
        embedded = charge.get("refunds")
        stripe_refunds = [r for r in ((embedded.get("data") or []) if isinstance(embedded, dict) else [])]
        # An embedded refund may leave its PaymentIntent out; it is the charge's.
        stripe_refunds = [
            {**r, "payment_intent": stripe_gateway.id_of(r.get("payment_intent")) or intent_id} for r in stripe_refunds
        ]
        release = _partial_capture_release(charge=charge, stripe_refunds=stripe_refunds)
        if release is not None and payment.stripe_release_refund_id != release:
            payment.stripe_release_refund_id = release
            payment.save(update_fields=["stripe_release_refund_id", "updated_at"])
        for stripe_refund in stripe_refunds:
            refund_record_stripe_refund(stripe_refund=stripe_refund, charge=charge, api_version=api_version)
    return payment


def _partial_capture_release(*, charge: dict, stripe_refunds: list[dict]) -> str | None:
    """
    The id of the refund with which an older API version released the uncaptured
    rest of a partially captured charge: made at the capture, so the earliest
    one not ours of exactly that rest; None when the charge was captured whole.
    """
    amount, captured = charge.get("amount"), charge.get("amount_captured")
    if not charge.get("captured") or not isinstance(amount, int) or not isinstance(captured, int):
        return None
    rest = amount - captured
    candidates = [
        r
        for r in stripe_refunds
        if rest > 0 and r.get("amount") == rest and not (r.get("metadata") or {}).get(REFUND_ID_METADATA_KEY)
    ]
    candidates.sort(key=lambda r: (r.get("created") or 0, str(r["id"])))
    return str(candidates[0]["id"]) if candidates else None
