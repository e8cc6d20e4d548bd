"""
Reconciling with Stripe: the fix for webhooks that never came. Used by the
`reconcile_stripe` command.

Each function reads one object from Stripe with no lock held, then locks and
records it through the same services and order rules the events go through
(Payment.may_apply, Refund.may_apply), as news of the moment Stripe answered
(the `Date` of its answer: Stripe's clock, never ours). So a
run changes only what Stripe holds differently, and running it again, or while
events arrive, is safe. None raises for a Stripe failure: the problem is
answered for the command to report.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.services import payment_record_intent
from refunds.models import Refund
from refunds.services import payment_sync_refunded_amount, refund_record_stripe_refund, stripe_refund_is_for


@dataclass
class ReconcileResult:
    """What reconciling one object did: whether it changed anything here."""

    changed: bool = False
    # Set when the object could not be brought up to date; the command reports it.
    problem: str = ""


def payment_reconcile(*, payment: Payment) -> ReconcileResult:
    """
    Read the payment's PaymentIntent from Stripe (its charge expanded) and apply
    it as news of the moment Stripe answered (its `Date`) (`payment_record_intent`: status,
    amounts, card), then count its refunds again. Answers whether its status or
    amounts changed; the problem when it has no PaymentIntent yet, Stripe failed
    (StripeError is not raised), or Stripe's amounts do not fit our limits
    (`books_mismatch`, checked afresh here: cleared when they fit again).
    Raises ValueError for a PaymentIntent status Stripe does not have.

    Locks: the payment row, only after Stripe has answered. Side effects: one
    read at Stripe. Safe to repeat: the order rule makes a second run a no-op.
    """
    if not payment.stripe_payment_intent_id:
        return ReconcileResult(problem="no PaymentIntent yet (its creation is retried with its Idempotency-Key)")
    try:
        intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    except stripe_gateway.StripeError as exc:
        return ReconcileResult(problem=f"Stripe: {exc.message}")
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        before = _books(payment)
        payment.books_mismatch = ""
        # As news of the `Date` of Stripe's answer: Stripe's clock, never ours.
        payment_record_intent(payment=payment, intent=intent, at=stripe_gateway.answered_at(intent))
        payment_sync_refunded_amount(payment=payment)
        if payment.books_mismatch:
            problem = "Stripe's amounts do not fit our limits (the payment's page in the admin says how)"
            return ReconcileResult(changed=_books(payment) != before, problem=problem)
        return ReconcileResult(changed=_books(payment) != before)


def _books(payment: Payment) -> tuple:
    return (
        payment.status,
        payment.amount,
        payment.amount_received,
        payment.amount_capturable,
        payment.refunded_amount,
        payment.books_mismatch,
    )


def payment_reconcile_refunds(*, payment: Payment) -> ReconcileResult:
    """
    List the refunds Stripe holds for a paid payment and record each one
    (`refund_record_stripe_refund`): a refund made in the Stripe dashboard whose
    events were all lost is found here, and one already recorded changes
    nothing. Answers whether any refund was created or moved; the problem when
    Stripe failed (StripeError is not raised).

    Locks: as `refund_record_stripe_refund`, per refund, only after Stripe has
    answered. Side effects: one list read at Stripe. Safe to repeat.
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
    Read a pending refund from Stripe and record it (`refund_record_stripe_refund`).
    One that never got Stripe's answer has no Stripe id: it is looked for among
    its payment's refunds at Stripe by our id in its metadata; if Stripe has
    none, `retry_refunds` is what sends it. Answers whether its status moved;
    the problem when Stripe failed or does not have it (StripeError is not
    raised).

    Locks: the payment row, then the refund, only after Stripe has answered.
    Side effects: reads at Stripe, never a write. Safe to repeat.
    """
    try:
        if refund.stripe_refund_id:
            stripe_refund = stripe_gateway.refund_retrieve(refund.stripe_refund_id)
        else:
            intent_id = refund.payment.stripe_payment_intent_id
            candidates = stripe_gateway.refund_list(payment_intent_id=intent_id) if intent_id else []
            stripe_refund = next((r for r in candidates if stripe_refund_is_for(refund, stripe_refund=r)), None)
    except stripe_gateway.StripeError as exc:
        return ReconcileResult(problem=f"Stripe: {exc.message}")
    if stripe_refund is None:
        return ReconcileResult(problem="not at Stripe (retry_refunds sends it)")
    before = refund.status
    recorded = refund_record_stripe_refund(stripe_refund=stripe_refund)
    return ReconcileResult(changed=recorded is not None and recorded.status != before)
