"""
Issue 16, fault 3 at scale: our refunds asked through the API while the local
Stripe fails part of its calls (500: nothing done; drop: done, answer lost), and
refunds made in Stripe's dashboard for the same payments arriving by webhook
meanwhile; then the operator's commands and the jobs. Each dashboard refund takes
what Stripe still has to refund (as Stripe's own limit would: the local Stripe
does not enforce it), so Stripe's truth always fits; our books must end as
Stripe's, having held the refund invariant at every commit (the database checks it).
"""

from __future__ import annotations

import io
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.core.management import CommandError, call_command

import core.stripe_gateway as stripe_gateway
from devkit.scenarios.common import invariant_violations
from devkit.workers import run_jobs_in_process
from payments.models import Payment
from refunds.models import Refund

REFUNDS_AT_STRIPE = "^/v1/refunds$"
FAULTS = ("error500", "drop", None)


@dataclass
class OutsideRefundsRun:
    """What the scenario did and found."""

    payments: int = 0
    # Our API refunds, by how Stripe's fault layer treated them (None: no fault).
    faults: Counter = field(default_factory=Counter)
    api_answers: Counter = field(default_factory=Counter)
    released: int = 0
    # Refunds here still waiting for Stripe, or released and never asked about, at the end.
    left_waiting: int = 0
    violations: list[str] = field(default_factory=list)


def stripe_refunded(payment: Payment) -> int:
    """What the local Stripe holds as refunded (or under way) for the payment's PaymentIntent."""
    made = stripe_gateway.refund_list(payment_intent_id=payment.stripe_payment_intent_id)
    return sum(r["amount"] for r in made if r["status"] in ("pending", "requires_action", "succeeded"))


def outside_refunds_during_faults(
    *, payments: list[Payment], staff_api, client, fake_stripe, post_event, stripe_event, seed: int = 0
) -> OutsideRefundsRun:
    """
    For each paid payment: our refund of a random share through the API (a 500
    or a lost answer on some), then the dashboard refunds what Stripe has left,
    its `refund.created` event posted and applied; then `retry_refunds`,
    `reconcile_stripe` and every queued job. Answers what happened and which
    payments' books do not end as the contract says.
    """
    rng = random.Random(seed)
    run = OutsideRefundsRun(payments=len(payments))
    for payment in payments:
        fault = rng.choice(FAULTS)
        run.faults[fault] += 1
        if fault:
            fake_stripe.add_fault(fault, method="POST", path=REFUNDS_AT_STRIPE, times=1)
        share = rng.choice((payment.amount, payment.amount // 2, payment.amount // 3))
        answer = staff_api.post(
            f"/api/payments/{payment.id}/refunds/",
            {"amount": share},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        run.api_answers[answer.status_code] += 1
        fake_stripe.clear_faults()
        left = payment.amount - stripe_refunded(payment)
        if left > 0:
            made = stripe_gateway.refund_create(
                payment_intent_id=payment.stripe_payment_intent_id,
                amount=left,
                idempotency_key=f"dashboard-{payment.pk}",
                metadata={},
            )
            post_event(client, stripe_event("refund.created", dict(made)))
    run.released = Refund.objects.filter(failure_reason__startswith="Released").count()
    try:
        call_command("retry_refunds", stdout=io.StringIO())
    except CommandError:
        pass
    call_command("reconcile_stripe", stdout=io.StringIO(), stderr=io.StringIO())
    run_jobs_in_process(due_now=True)
    run.left_waiting = Refund.objects.filter(status=Refund.Status.PENDING, stripe_refund_id__isnull=True).count()
    run.left_waiting += Refund.objects.filter(stripe_check_due=True).count()
    for payment in payments:
        run.violations += invariant_violations(payment, at_stripe=fake_stripe)
        payment.refresh_from_db()
        if payment.refunded_amount != stripe_refunded(payment):
            run.violations.append(f"payment {payment.pk}: refunded {payment.refunded_amount} here, not Stripe's")
    return run
