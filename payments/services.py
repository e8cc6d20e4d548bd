"""
Payment use cases: creating, confirming, capturing and canceling (voiding) a
payment (the API, the checkout page, the support desk), and recording what
Stripe says about its PaymentIntent and its charge (the webhook handlers, the
reconcile command). Disputes: payments.disputes.

Every function that calls Stripe follows one pattern, so no row lock is ever
held across a network call: lock, check and write; commit; call Stripe; lock
again and record the answer. A Stripe call that ends without a definite answer
leaves the row as it was, and the same call with the same idempotency key
resumes it. Amounts are integers in the currency's minor unit throughout.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from core.exceptions import (
    CaptureAmountInvalid,
    CaptureRefused,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidState,
    NotCapturable,
)
from core.idempotency import PAYMENT_ID_METADATA_KEY, request_fingerprint
from core.leases import lease_is_live
from payments.currencies import get_currency
from payments.models import Payment


def stripe_timestamp(seconds: int | float | None) -> datetime:
    """Stripe's `created` (Unix seconds) as an aware datetime; now when missing."""
    if seconds is None:
        return timezone.now()
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _create_idempotency_key(payment: Payment) -> str:
    # Derived from our row, so every retry of this payment's creation is the same
    # request to Stripe and can never make a second PaymentIntent.
    return f"payment-{payment.id}-create"


# --- Creating a payment -----------------------------------------------------


def payment_create(
    *,
    user,
    idempotency_key: str,
    amount: int,
    currency: str,
    description: str = "",
    metadata: dict[str, str] | None = None,
    capture_method: str = Payment.CaptureMethod.AUTOMATIC,
    order_reference: str = "",
    customer_email: str = "",
    customer_name: str = "",
) -> tuple[Payment, bool]:
    """
    Create a payment and its PaymentIntent; answers (payment, replayed).

    Takes the API user, the client's `Idempotency-Key`, `amount` in the
    currency's minor unit (validated by the caller: within the currency's
    limits, payments.currencies), a lowercase ISO `currency`, Stripe-valid
    `description` and `metadata` (str to str), the `capture_method` (`manual`:
    the card is only authorized, and `payment_capture` takes the money later),
    and the shopper: the storefront's `order_reference`, the `customer_email`
    (sent to Stripe as `receipt_email`: Stripe emails the receipt there) and
    `customer_name`. `replayed` is True when the key had already made this
    payment: the stored payment is answered as it is.

    Raises IdempotencyKeyReused (422) when the key was used with another body,
    IdempotencyKeyInUse (409) while another request holds the key's lease
    (PAYMENT_CREATE_LEASE_SECONDS), and the gateway's errors: StripeRefused
    (a definite no; the row is deleted, nothing is left half-written, the key
    is free again), StripeServerError / StripeUnavailable (ambiguous; the row
    is kept, its lease dropped, for the retry).

    Locks: the payment row, briefly, in `_payment_claim` and `_payment_record_created`;
    never while Stripe is called. Side effects: the payment row, committed
    before Stripe is called; one PaymentIntent at Stripe, whose metadata
    carries our payment id. Safe to retry with the same key: a replay answers
    the stored payment; after a Stripe outage or a lost answer the retry
    resends the same Stripe idempotency key, so Stripe answers with the
    PaymentIntent it already made and there is never a second one.
    """
    fields = {"amount": amount, "currency": currency, "description": description, "metadata": metadata or {}}
    shopper = {
        "capture_method": capture_method,
        "order_reference": order_reference,
        "customer_email": customer_email,
        "customer_name": customer_name,
    }
    # Fields left at their default stay out of the fingerprint, so a request made
    # before they existed keeps the fingerprint it was stored with.
    fingerprinted = {**fields, **{name: value for name, value in shopper.items() if value not in ("", "automatic")}}
    payment, replayed = _payment_claim(
        user=user,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(fingerprinted),
        fields={**fields, **shopper},
    )
    if replayed:
        return payment, True

    try:
        intent = stripe_gateway.payment_intent_create(
            amount=payment.amount,
            currency=payment.currency,
            metadata={**payment.metadata, PAYMENT_ID_METADATA_KEY: str(payment.id)},
            description=payment.description,
            receipt_email=payment.customer_email,
            capture_method=payment.capture_method,
            idempotency_key=_create_idempotency_key(payment),
        )
    except stripe_gateway.StripeRefused:
        # A definite refusal means nothing exists at Stripe: forget the attempt,
        # so nothing is left half-written and the key may be used again.
        Payment.objects.filter(pk=payment.pk, stripe_payment_intent_id__isnull=True).delete()
        raise
    except stripe_gateway.StripeError:
        # Ambiguous: keep the row for the retry, but let it in without waiting for the lease.
        Payment.objects.filter(pk=payment.pk).update(stripe_call_started_at=None)
        raise
    return _payment_record_created(payment=payment, intent=intent), False


def _payment_claim(*, user, idempotency_key: str, fingerprint: str, fields: dict) -> tuple[Payment, bool]:
    """
    Take the idempotency key: insert the payment, or find the one already under
    the key. Answers (payment, replayed); when not replayed the caller holds a
    lease (`stripe_call_started_at`) and must call Stripe.
    """
    now = timezone.now()
    row = {"user": user, "idempotency_key": idempotency_key, "request_fingerprint": fingerprint, **fields}
    if not transaction.get_connection().in_atomic_block:
        # Autocommit: the INSERT is its own transaction, committed in one round trip
        # (no BEGIN, savepoint or COMMIT of our own); a key already taken fails it
        # alone, and the row is then read under its lock below.
        try:
            return Payment.objects.create(stripe_call_started_at=now, **row), False
        except IntegrityError:
            pass
    with transaction.atomic():
        try:
            with transaction.atomic():
                payment = Payment.objects.create(stripe_call_started_at=now, **row)
            return payment, False
        except IntegrityError:
            # The unique (user, idempotency_key) index made us wait for the other
            # insert to commit; now read what it wrote.
            pass
        payment = Payment.objects.select_for_update().get(user=user, idempotency_key=idempotency_key)
        if payment.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request body. Use a new key for a new payment."
            )
        if payment.stripe_payment_intent_id:
            return payment, True
        if lease_is_live(payment.stripe_call_started_at, seconds=settings.PAYMENT_CREATE_LEASE_SECONDS, now=now):
            raise IdempotencyKeyInUse("A request with this Idempotency-Key is still being processed. Retry shortly.")
        payment.stripe_call_started_at = now
        payment.save(update_fields=["stripe_call_started_at", "updated_at"])
        return payment, False


# What Stripe's answer to our create may set on the row without the lock: none of
# these makes news (notifications.outbox.WATCHED), so no save signal is owed.
CREATE_ANSWER_FIELDS = frozenset(
    {"stripe_payment_intent_id", "client_secret", "capture_method", "stripe_state_at", "stripe_call_started_at"}
)


def _payment_record_created(*, payment: Payment, intent: dict) -> Payment:
    """
    Record Stripe's answer to our create on `payment`, the row as `_payment_claim`
    left it, and answer the payment as recorded.

    Usually in one statement: a compare-and-set UPDATE of the fields the answer
    sets, on the condition that nothing wrote the row since the claim (no
    PaymentIntent recorded, our lease and `updated_at` unchanged: every save sets
    it) and that the answer moves nothing but CREATE_ANSWER_FIELDS. Otherwise (a
    webhook or the desk got there first, or the answer moves the status) the row
    is locked, read again, and the answer applied by payment_record_intent, whose
    save makes the outbox's events.
    """
    answered = copy.copy(payment)
    answered.stripe_call_started_at = None
    _payment_apply_intent(payment=answered, intent=intent, at=stripe_gateway.answered_at(intent))
    changed = {
        field.attname: getattr(answered, field.attname)
        for field in Payment._meta.concrete_fields
        if getattr(answered, field.attname) != getattr(payment, field.attname)
    }
    if changed.keys() <= CREATE_ANSWER_FIELDS:
        answered.updated_at = timezone.now()
        written = Payment.objects.filter(
            pk=payment.pk,
            stripe_payment_intent_id__isnull=True,
            stripe_call_started_at=payment.stripe_call_started_at,
            updated_at=payment.updated_at,
        ).update(updated_at=answered.updated_at, **changed)
        if written:
            return answered
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        payment.stripe_call_started_at = None
        payment_record_intent(payment=payment, intent=intent)
        return payment


# --- Recording Stripe's state -----------------------------------------------


def payment_record_intent(
    *, payment: Payment, intent: dict, at: datetime | None = None, payment_failed: bool = False
) -> bool:
    """
    Apply a PaymentIntent (a dict as Stripe answered or an event carried it:
    `id`, `status`, and when told `amount`, `amount_received`,
    `amount_capturable`, `capture_method`, `client_secret`,
    `last_payment_error`, and `latest_charge`, an id or the expanded charge) to
    `payment` and save it; answers whether the status changed. `at` is when
    that state was true at Stripe, on Stripe's clock only (an event's
    `created`); None for an object Stripe answered with: the `Date` of that
    answer (stripe_gateway.answered_at), never our clock. Payment.may_apply
    decides whether it may still move the payment, so older news changes
    nothing. `payment_failed` says a payment attempt failed (the intent is
    back in `requires_payment_method`): status `failed`.
    The amounts (minor units) go through Payment.apply_stripe_status; an
    expanded charge also gives the card and `capture_before`.

    Raises ValueError for a PaymentIntent status Stripe does not have. Locks:
    none of its own; the caller holds the payment's row lock. No network call.
    Safe to repeat: the same news applied twice changes nothing the second time.
    """
    if at is None:
        at = stripe_gateway.answered_at(intent)
    changed = _payment_apply_intent(payment=payment, intent=intent, at=at, payment_failed=payment_failed)
    payment.save()
    return changed


def _payment_apply_intent(*, payment: Payment, intent: dict, at: datetime, payment_failed: bool = False) -> bool:
    """payment_record_intent on the instance only, not saved: `at` is on Stripe's clock."""
    if not payment.stripe_payment_intent_id:
        payment.stripe_payment_intent_id = intent["id"]
    if intent.get("client_secret") and not payment.client_secret:
        payment.client_secret = intent["client_secret"]
    if intent.get("capture_method"):
        payment.capture_method = Payment.capture_method_from_stripe(intent["capture_method"])
    error = intent.get("last_payment_error") or {}
    status = Payment.status_from_stripe(intent["status"], payment_failed=payment_failed or bool(error))
    changed = payment.apply_stripe_status(
        status,
        at=at,
        failure_code=str(error.get("decline_code") or error.get("code") or ""),
        failure_message=str(error.get("message") or ""),
        amount=_stripe_int(intent.get("amount")),
        amount_received=_stripe_int(intent.get("amount_received")),
        amount_capturable=_stripe_int(intent.get("amount_capturable")),
    )
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        _apply_card(payment, charge)
    return changed


def _stripe_int(value) -> int | None:
    """An amount Stripe sent (an int), or None when it is missing or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _apply_card(payment: Payment, charge: dict) -> None:
    """The card and the authorization's deadline a charge tells (its payment_method_details.card)."""
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    capture_before = _stripe_int(card.get("capture_before"))
    payment.apply_stripe_card(
        card_brand=str(card.get("brand") or ""),
        card_last4=str(card.get("last4") or ""),
        capture_before=stripe_timestamp(capture_before) if capture_before else None,
    )


def payment_record_stripe_charge(*, charge: dict, at: datetime) -> Payment | None:
    """
    Record what a Stripe Charge (a `charge.*` event's object: `id`,
    `payment_intent` as an id or an expanded object, `status`, `captured`,
    `amount`, `amount_captured`, `refunded`, `payment_method_details`) proves
    about its payment, as news of `at` (the event's `created`), and answer the
    payment; None when the charge names no PaymentIntent or its payment is not
    known here (nothing is written).

    - captured and succeeded: the payment has succeeded, having received
      `amount_captured` (its whole `amount` when an older API leaves that out);
    - succeeded, not captured, and refunded: an older API's void or expiry of the
      authorization: the payment is canceled and received nothing (never a refund);
    - succeeded, not captured: authorized, capturable (`requires_capture`);
    - pending: processing.
    The card (brand, last 4) and `capture_before` are recorded in every case.

    Locks: the payment row, in one transaction (the caller's, if it has one). No
    network call. Safe to repeat: the order rules of Payment.apply_stripe_status.
    """
    intent_id = stripe_gateway.id_of(charge.get("payment_intent"))
    if not intent_id:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
        if payment is None:
            return None
        amount = _stripe_int(charge.get("amount"))
        if charge.get("status") == "succeeded" and charge.get("captured"):
            captured = _stripe_int(charge.get("amount_captured"))
            payment.apply_stripe_status(
                Payment.Status.SUCCEEDED, at=at, amount=amount, amount_received=captured or amount
            )
        elif charge.get("status") == "succeeded" and (charge.get("refunded") or charge.get("amount_refunded")):
            payment.apply_stripe_status(Payment.Status.CANCELED, at=at, amount_received=0)
        elif charge.get("status") == "succeeded":
            payment.apply_stripe_status(Payment.Status.REQUIRES_CAPTURE, at=at, amount=amount, amount_received=0)
        elif charge.get("status") == "pending":
            payment.apply_stripe_status(Payment.Status.PROCESSING, at=at, amount=amount)
        _apply_card(payment, charge)
        payment.save()
    return payment


def _payment_record_answer(*, payment_id, intent: dict) -> Payment:
    """Lock the payment again and record the PaymentIntent Stripe just answered with, as news of Stripe's answer."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        payment_record_intent(payment=payment, intent=intent)
    return payment


def payment_for_intent(*, intent: dict, adopt: bool = True) -> Payment | None:
    """
    The payment a PaymentIntent (a dict with `id`, and for adoption `amount`,
    `currency`, optional `metadata`, `description`, `capture_method`,
    `receipt_email`, `created`) belongs to,
    row-locked: by our id in its metadata (only for a payment with this
    PaymentIntent, or with none yet and the same amount and currency: metadata
    can be copied), then by its id. With `adopt`, a
    PaymentIntent the app never created becomes a payment with no user (its
    amount in minor units, as Stripe sent it); without, None when none matches.

    Must run inside a transaction: the lock lasts until it ends. Two deliveries
    adopting the same PaymentIntent at once end with one payment (the unique
    PaymentIntent id; the second reads the first's). No network call.
    """
    payment_id = (intent.get("metadata") or {}).get(PAYMENT_ID_METADATA_KEY)
    if payment_id:
        try:
            found = Payment.objects.select_for_update().filter(pk=uuid.UUID(str(payment_id))).first()
        except ValueError:
            found = None
        # Metadata can be copied onto another PaymentIntent (the dashboard's "duplicate"):
        # it names our payment only while that payment has no other PaymentIntent, and
        # one it has none of yet only for the amount and currency we asked Stripe for.
        if found is not None and found.stripe_payment_intent_id == intent["id"]:
            return found
        if found is not None and not found.stripe_payment_intent_id and _asks_for(intent, found):
            return found
    found = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent["id"]).first()
    if found is not None or not adopt:
        return found
    try:
        with transaction.atomic():
            return Payment.objects.create(
                user=None,
                stripe_payment_intent_id=intent["id"],
                amount=int(intent["amount"]),
                currency=str(intent["currency"]).lower()[:3],
                capture_method=Payment.capture_method_from_stripe(intent.get("capture_method")),
                metadata={k: str(v) for k, v in (intent.get("metadata") or {}).items()},
                description=str(intent.get("description") or "")[:1000],
                customer_email=str(intent.get("receipt_email") or "")[:254],
                created_at=stripe_timestamp(intent.get("created")),
            )
    except IntegrityError:
        # Another delivery adopted it at the same moment.
        return Payment.objects.select_for_update().get(stripe_payment_intent_id=intent["id"])


def _asks_for(intent: dict, payment: Payment) -> bool:
    """Whether the PaymentIntent asks for the payment's amount in its currency (as we created it)."""
    return intent.get("amount") == payment.amount and str(intent.get("currency") or "").lower() == payment.currency


def payment_record_stripe_intent(*, intent: dict, at: datetime, payment_failed: bool = False) -> Payment:
    """
    Record a PaymentIntent Stripe told us about (a `payment_intent.*` event's
    object): find its payment, or adopt it (no user) if the app never made it,
    and apply it as `payment_record_intent` does; answers the payment.

    `at` is when the news was true at Stripe (the event's `created`); older news
    than what the payment holds changes nothing, and a final status is never
    left. Raises ValueError for an unknown PaymentIntent status (nothing is
    written). Locks: the payment row, in one transaction (the caller's, if it
    has one). No network call. Safe to repeat: applied twice, or after newer
    news, it changes nothing.
    """
    with transaction.atomic():
        payment = payment_for_intent(intent=intent, adopt=True)
        payment_record_intent(payment=payment, intent=intent, at=at, payment_failed=payment_failed)
    return payment


# --- Canceling and voiding ---------------------------------------------------


def payment_cancel(*, payment: Payment) -> Payment:
    """
    Cancel the PaymentIntent at Stripe and here; answers the payment as
    recorded afterwards (`canceled`; already canceled: answered unchanged,
    without calling Stripe). For an authorized payment (`requires_capture`) this
    is a void: the authorization is released, nothing was received
    (`amount_received` 0) and nothing is refunded.

    Raises InvalidState (409) once the payment has been paid, while its
    creation has not finished, or when Stripe refuses because the payment moved
    on meanwhile (its real state is recorded first); the gateway's
    StripeServerError / StripeUnavailable when Stripe does not answer (nothing
    recorded). Locks: the payment row briefly before and after the Stripe call,
    never during. Side effects: the cancellation at Stripe (a void, when the
    money was only authorized). Safe to retry: canceling at Stripe is final, and
    a refusal is answered by reading the PaymentIntent's real state.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if payment.status == Payment.Status.CANCELED:
            return payment
        if payment.status in Payment.PAID:
            raise InvalidState(f"The payment has {payment.status} and can no longer be canceled.")
        if not payment.stripe_payment_intent_id:
            raise InvalidState(
                "The payment is still being created at Stripe; retry the creation with its Idempotency-Key first."
            )
        intent_id = payment.stripe_payment_intent_id

    try:
        # A fresh key per attempt: an earlier refusal (say, while processing) must not be replayed.
        intent = stripe_gateway.payment_intent_cancel(
            intent_id, idempotency_key=f"payment-{payment.pk}-cancel-{uuid.uuid4()}"
        )
    except stripe_gateway.StripeRefused:
        # Stripe would not cancel: most likely the payment moved on meanwhile.
        intent = stripe_gateway.payment_intent_retrieve(intent_id)
        payment = _payment_record_answer(payment_id=payment.pk, intent=intent)
        if payment.status != Payment.Status.CANCELED:
            raise InvalidState(f"Stripe cannot cancel this payment: it is {payment.status}.") from None
        return payment

    return _payment_record_answer(payment_id=payment.pk, intent=intent)


# --- Capturing ----------------------------------------------------------------


def payment_capture(*, payment: Payment, amount: int | None, idempotency_key: str) -> tuple[Payment, bool]:
    """
    Capture an authorized payment (`requires_capture`): `amount` minor units, at
    most its `amount_capturable`, or all of it when None; Stripe releases the
    rest of the authorization (never a refund). Answers (payment, replayed), the
    payment as recorded afterwards (`succeeded`, `amount_received` = what was
    captured); `replayed` is True when this key had already captured it. Used by
    the API (the storefront, when it ships) and the support desk.

    A PaymentIntent is captured once, so the payment holds its capture request:
    `idempotency_key` (the caller's, 1-255 characters) with its body and a lease
    (PAYMENT_CREATE_LEASE_SECONDS), taken under the row lock before Stripe is
    called. Raises IdempotencyKeyReused (422: this key with another amount),
    IdempotencyKeyInUse (409: this key's request is still running), NotCapturable
    (409: not `requires_capture`, e.g. captured, voided, expired, or another
    request's capture under way), CaptureAmountInvalid (400: not positive, above
    what is capturable, or not a multiple of the currency's step), CaptureRefused
    (409: Stripe's definite no, the PaymentIntent's real state recorded first),
    and the gateway's StripeServerError / StripeUnavailable when the outcome is
    unknown (the lease is dropped: resend with the same key).

    Locks: the payment row, briefly, before and after the Stripe call, never
    during. Side effects: the capture at Stripe, with a Stripe idempotency key
    derived from the payment and the caller's key. Safe to retry: the same key
    gets Stripe's first answer, never a second capture (Stripe captures a
    PaymentIntent once in any case).
    """
    fingerprint = request_fingerprint({"amount": amount})
    payment, replayed = _payment_claim_capture(
        payment=payment, amount=amount, idempotency_key=idempotency_key, fingerprint=fingerprint
    )
    if replayed:
        return payment, True
    intent_id = payment.stripe_payment_intent_id
    key_digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    try:
        intent = stripe_gateway.payment_intent_capture(
            intent_id, idempotency_key=f"payment-{payment.pk}-capture-{key_digest}", amount_to_capture=amount
        )
    except stripe_gateway.StripeRefused as exc:
        refusal = exc
    except stripe_gateway.StripeError:
        # Ambiguous: a retry with the same key may come in at once, and resends the same Stripe key.
        Payment.objects.filter(pk=payment.pk).update(capture_started_at=None)
        raise
    else:
        return _payment_record_capture(payment_id=payment.pk, intent=intent), False

    # Most likely the payment moved on meanwhile (voided, expired, captured elsewhere): record what it is.
    try:
        intent = stripe_gateway.payment_intent_retrieve(intent_id)
    except stripe_gateway.StripeError:
        Payment.objects.filter(pk=payment.pk).update(capture_started_at=None)
        raise
    payment = _payment_record_capture(payment_id=payment.pk, intent=intent)
    if payment.status != Payment.Status.REQUIRES_CAPTURE:
        raise NotCapturable(f"Stripe did not capture the payment: it is {payment.status}.", status=payment.status)
    raise CaptureRefused(f"Stripe refused the capture: {refusal.message}")


def _payment_claim_capture(
    *, payment: Payment, amount: int | None, idempotency_key: str, fingerprint: str
) -> tuple[Payment, bool]:
    """Take the payment's capture for this key (its lease), or answer what this key already did."""
    now = timezone.now()
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        lease_live = lease_is_live(payment.capture_started_at, seconds=settings.PAYMENT_CREATE_LEASE_SECONDS, now=now)
        if payment.capture_idempotency_key == idempotency_key:
            if payment.capture_request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used to capture another amount. Use a new key."
                )
            if payment.status != Payment.Status.REQUIRES_CAPTURE:
                return payment, True
            if lease_live:
                raise IdempotencyKeyInUse(
                    "A capture with this Idempotency-Key is still being processed. Retry shortly."
                )
        else:
            if payment.status != Payment.Status.REQUIRES_CAPTURE:
                raise NotCapturable(
                    f"Only an authorized payment (requires_capture) can be captured; this one is {payment.status}.",
                    status=payment.status,
                )
            if payment.capture_idempotency_key and lease_live:
                raise NotCapturable(
                    "Another capture of this payment is under way; retry with its Idempotency-Key.",
                    status=payment.status,
                )
            _check_capture_amount(payment, amount)
        payment.capture_idempotency_key = idempotency_key
        payment.capture_request_fingerprint = fingerprint
        payment.capture_started_at = now
        payment.save(
            update_fields=["capture_idempotency_key", "capture_request_fingerprint", "capture_started_at", "updated_at"]
        )
    return payment, False


def _check_capture_amount(payment: Payment, amount: int | None) -> None:
    if amount is None:
        return
    capturable = payment.amount_capturable
    currency = get_currency(payment.currency)
    if amount <= 0 or amount > capturable:
        raise CaptureAmountInvalid(
            f"The amount must be between 1 and {capturable} ({currency.format(capturable)}), what is capturable.",
            amount_capturable=capturable,
        )
    if amount % currency.step:
        raise CaptureAmountInvalid(
            f"{currency.code.upper()} amounts must be a multiple of {currency.step} minor units.",
            amount_capturable=capturable,
        )


def _payment_record_capture(*, payment_id, intent: dict) -> Payment:
    """Record the PaymentIntent after a capture attempt, as news of Stripe's answer, and drop the capture's lease."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        payment.capture_started_at = None
        payment_record_intent(payment=payment, intent=intent)
    return payment


# --- Paying from the checkout page ------------------------------------------


def _intent_taking_a_card(payment: Payment) -> str:
    """The PaymentIntent id of a payment that may still be paid with a card; InvalidState otherwise."""
    if payment.status in Payment.FINAL or payment.status == Payment.Status.REQUIRES_CAPTURE:
        raise InvalidState(f"The payment is {payment.status}: it takes no card any more.")
    if not payment.stripe_payment_intent_id:
        raise InvalidState(
            "The payment is still being created at Stripe; retry the creation with its Idempotency-Key first."
        )
    return payment.stripe_payment_intent_id


def payment_setup_intent_create(*, payment: Payment) -> dict:
    """
    A SetupIntent through which the checkout page's Stripe.js collects one card
    (`confirmCardSetup`); answered as the dict Stripe sent, for its
    `client_secret`. Our payment id rides in its metadata.

    Locks: none. Raises InvalidState (409) once the payment is paid or canceled,
    or before its PaymentIntent exists; the gateway's StripeError subclasses
    when Stripe refuses or does not answer.
    Side effects: one SetupIntent at Stripe, which moves no money. Every call
    makes a new one, since a SetupIntent takes one card and a customer may try
    several; a retry after a lost answer leaves at worst an unused SetupIntent
    behind, never a charge.
    """
    _intent_taking_a_card(payment)
    return stripe_gateway.setup_intent_create(
        idempotency_key=f"payment-{payment.pk}-setup-{uuid.uuid4()}",
        metadata={PAYMENT_ID_METADATA_KEY: str(payment.pk)},
    )


def payment_confirm(*, payment: Payment, payment_method: str) -> Payment:
    """
    Pay `payment` with `payment_method` (a Stripe PaymentMethod id, `pm_…`, that
    Stripe.js collected): set it on the PaymentIntent, confirm it, and answer
    the payment with Stripe's answer recorded: `succeeded` (`requires_capture`
    for a manual capture: authorized only), `requires_action` (Stripe.js then
    runs the 3-D Secure challenge), `processing`, or `failed` with Stripe's
    decline message in `failure_message`.

    Locks: the payment row, briefly, before and after the Stripe calls, never
    during them. Raises InvalidState (409) once the payment is paid or canceled,
    or before its PaymentIntent exists; the gateway's StripeServerError /
    StripeUnavailable when Stripe does not answer (nothing recorded; retry).
    Safe to retry: both Stripe calls carry keys derived from the payment and the
    payment method, so a double submit, or a retry after a lost answer, gets
    Stripe's first answer again and never charges twice; another card is
    another request: if an earlier confirmation went through unseen, Stripe
    refuses it and the answer is the payment as paid. Any other refusal by
    Stripe is raised after the PaymentIntent's real state has been recorded.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        intent_id = _intent_taking_a_card(payment)

    try:
        # localstripe answers 500 to `confirm(payment_method=...)`; update-then-confirm works on both.
        stripe_gateway.payment_intent_update(
            intent_id, idempotency_key=f"payment-{payment.pk}-method-{payment_method}", payment_method=payment_method
        )
        intent = stripe_gateway.payment_intent_confirm(
            intent_id, idempotency_key=f"payment-{payment.pk}-confirm-{payment_method}"
        )
    except stripe_gateway.StripeRefused as exc:
        # A declined card: Stripe sends the PaymentIntent with the error (localstripe does not: read it).
        intent = exc.stripe_object or stripe_gateway.payment_intent_retrieve(intent_id)
        payment = _payment_record_answer(payment_id=payment.pk, intent=intent)
        # Declined, or already paid (or authorized) by an earlier confirmation whose answer was lost:
        # that is the answer.
        if payment.status in Payment.PAID | {Payment.Status.FAILED, Payment.Status.REQUIRES_CAPTURE}:
            return payment
        raise
    return _payment_record_answer(payment_id=payment.pk, intent=intent)
