"""
Dispute use cases: recording the chargebacks Stripe tells us about
(`charge.dispute.*` events). A dispute never moves money here: Stripe withdraws
and reinstates it. Its payment shows the outcome (`dispute_status`, and
`amount_lost_to_disputes` once lost); a lost dispute also stops refunds
(refunds.services).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

import core.stripe_gateway as stripe_gateway
from payments.models import Dispute, Payment
from payments.services import stripe_timestamp


def dispute_record_stripe_dispute(*, stripe_dispute: dict, at: datetime) -> Dispute | None:
    """
    Record a Stripe Dispute object (a `charge.dispute.*` event's: `id`,
    `status`, `amount` in minor units, `payment_intent` as an id or an expanded
    object, optional `reason` and `evidence_details.due_by` in Unix seconds) on
    its payment, and answer our Dispute; None when it names no PaymentIntent or
    its payment is not known here (nothing is written: the object carries no
    amount to make a payment from).

    `at` is when the news was true at Stripe (the event's `created`); a new
    dispute's `created_at` is its own `created` (Stripe's clock), else `at`.
    Dispute.may_apply keeps a closed dispute closed and lets only newer news
    move an open one. Locks: the payment row, then the
    dispute, in one transaction (the caller's, if it has one); so two deliveries
    of one new dispute cannot both create it. No network call. Safe to repeat:
    the same object applied again changes nothing.
    """
    intent_id = stripe_gateway.id_of(stripe_dispute.get("payment_intent"))
    if not intent_id:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
        if payment is None:
            return None
        dispute = Dispute.objects.select_for_update().filter(stripe_dispute_id=stripe_dispute["id"]).first()
        if dispute is None:
            dispute = Dispute(
                stripe_dispute_id=stripe_dispute["id"],
                payment=payment,
                amount=int(stripe_dispute["amount"]),
                # When the dispute was opened at Stripe (its own `created`), else the news' time.
                created_at=stripe_timestamp(stripe_dispute["created"])
                if _is_int(stripe_dispute.get("created"))
                else at,
            )
        dispute.apply_stripe_dispute(stripe_dispute, at=at)
        dispute.save()
        _payment_follows_disputes(payment)
    return dispute


def _payment_follows_disputes(payment: Payment) -> None:
    """The payment shows its disputes' outcome: the latest one's status and what the lost ones took."""
    disputes = list(payment.disputes.all())
    latest = max(disputes, key=lambda dispute: (dispute.created_at, dispute.pk))
    lost = sum(dispute.amount for dispute in disputes if dispute.status == Dispute.Status.LOST)
    payment.set_dispute_outcome(latest_status=latest.status, amount_lost=lost)
    payment.save(update_fields=["dispute_status", "amount_lost_to_disputes", "updated_at"])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
