"""
Scenario 1, the webhook storm: ten events for each of many payments (half of them
unknown to us until their events arrive), delivered several times each, shuffled,
to several servers at once, redelivered as Stripe does until each got a 2xx; the
servers store them and the workers apply them; then every payment and refund is
compared with its final state at Stripe.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from django.db import close_old_connections

import core.stripe_gateway as stripe_gateway
from devkit.scenarios.common import REQUEST_TIMEOUT, invariant_violations, send_concurrently, while_running
from devkit.siteserver import TEST_WEBHOOK_SECRET
from payments.models import Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.tests.factories import charge_object, payment_intent_event, refund_object, stripe_event

STORM_EVENTS_PER_PAYMENT = 10


@dataclass
class StormPayment:
    """What Stripe holds at the end for one payment of the storm: our expected final state."""

    intent_id: str
    amount: int
    # (Stripe id, amount, final status) of each refund.
    refunds: list[tuple[str, int, str]]
    # Our id when the app made the payment; None for one the storm makes us adopt.
    payment_id: uuid.UUID | None

    @property
    def refunded(self) -> int:
        return sum(amount for _, amount, status in self.refunds if status == Refund.Status.SUCCEEDED)

    @property
    def status(self) -> str:
        return Payment.Status.REFUNDED if self.refunded == self.amount else Payment.Status.PARTIALLY_REFUNDED


def storm_prepare(*, payments: int, user) -> tuple[dict[str, str], list[StormPayment]]:
    """
    The events of `payments` payments, ten each (answers event bodies by id, and
    the plan). A PaymentIntent's four steps: created; requires_action (every
    third payment: payment_failed, the customer then retrying); processing;
    succeeded. Two refunds, each created pending then updated, the second also
    as charge.refund.updated; and charge.refunded. The second refund takes the
    rest of the amount on odd payments, half of it on even ones, and fails
    (refund.failed) on every fifth payment.

    Half the payments are written here first, as the API leaves them (`user`'s,
    events carry our id). Stripe's events are the first we hear of the others:
    they are paid at the local Stripe here (STRIPE_API_BASE), by another
    integration as it were, so a worker that gets one of their refund events
    before any of their PaymentIntent's reads the PaymentIntent there and adopts it.
    """
    run = uuid.uuid4().hex[:8]
    start = int(time.time()) - 600
    plan, made, events = [], [], []
    for n in range(payments):
        amount = 4000 + 4 * n
        quarter = amount // 4
        intent_id = f"pi_storm_{run}_{n:05d}"
        payment = None
        if n % 2:
            intent_id = _paid_elsewhere(amount=amount, key=f"storm-{run}-{n}")
        else:
            payment = Payment(
                user=user, stripe_payment_intent_id=intent_id, amount=amount, currency="usd", idempotency_key=intent_id
            )
            made.append(payment)
        second_amount = amount - quarter if n % 2 else amount // 2
        second_status = Refund.Status.FAILED if n % 5 == 4 else Refund.Status.SUCCEEDED
        stormed = StormPayment(
            intent_id=intent_id,
            amount=amount,
            refunds=[
                (f"re_storm_{run}_{n:05d}_a", quarter, Refund.Status.SUCCEEDED),
                (f"re_storm_{run}_{n:05d}_b", second_amount, second_status),
            ],
            payment_id=payment.id if payment else None,
        )
        plan.append(stormed)
        intent = {} if payment else {"intent_id": intent_id, "amount": amount}
        second_step = "payment_intent.payment_failed" if n % 3 == 2 else "payment_intent.requires_action"
        for offset, event_type in enumerate(
            ("payment_intent.created", second_step, "payment_intent.processing", "payment_intent.succeeded")
        ):
            events.append(payment_intent_event(event_type, payment, created=start + offset, **intent))
        (first_id, first_amount, _), (second_id, _, _) = stormed.refunds

        def refund(refund_id, refund_amount, status, intent_id=intent_id):
            failure = "expired_or_canceled_card" if status == Refund.Status.FAILED else None
            return refund_object(
                intent_id=intent_id, refund_id=refund_id, amount=refund_amount, status=status, failure_reason=failure
            )

        second_update = "refund.failed" if second_status == Refund.Status.FAILED else "refund.updated"
        events += [
            stripe_event("refund.created", refund(first_id, first_amount, "pending"), created=start + 4),
            stripe_event("refund.updated", refund(first_id, first_amount, "succeeded"), created=start + 5),
            stripe_event("refund.created", refund(second_id, second_amount, "pending"), created=start + 5),
            stripe_event(second_update, refund(second_id, second_amount, second_status), created=start + 6),
            stripe_event("charge.refund.updated", refund(second_id, second_amount, second_status), created=start + 6),
            stripe_event(
                "charge.refunded",
                charge_object(intent_id=intent_id, amount=amount, amount_refunded=stormed.refunded),
                created=start + 7,
            ),
        ]
    Payment.objects.bulk_create(made)
    return {event["id"]: json.dumps(event) for event in events}, plan


def _paid_elsewhere(*, amount: int, key: str) -> str:
    """A PaymentIntent of `amount` paid at the local Stripe, that no payment here records; answers its id."""
    intent = stripe_gateway.payment_intent_create(
        amount=amount, currency="usd", metadata={}, idempotency_key=key, payment_method="pm_card_visa", confirm=True
    )
    return intent["id"]


@dataclass
class Delivery:
    """How a set of events was delivered: posts made, answers got, rounds of redelivery."""

    events: int = 0
    posts: int = 0
    answers: Counter = field(default_factory=Counter)
    redelivery_rounds: int = 0
    redelivered: int = 0
    # Events no delivery got a 2xx for, after the last round.
    undelivered: int = 0
    seconds: float = 0.0


def post_webhook(session: requests.Session, url: str, body: str) -> requests.Response:
    """POST one event to the server's endpoint as Stripe does: raw body, signed at sending time."""
    signature = stripe_gateway.webhook_sign(body, secret=TEST_WEBHOOK_SECRET, timestamp=int(time.time()))
    return session.post(
        url + "/webhooks/stripe/",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=REQUEST_TIMEOUT,
    )


def deliver(
    urls: list[str],
    bodies: dict[str, str],
    *,
    copies: int = 3,
    concurrency: int = 16,
    seed: int = 0,
    max_rounds: int = 20,
    during: Callable[[], None] | None = None,
) -> Delivery:
    """
    Deliver every event `copies` times, shuffled, spread over the servers, from
    `concurrency` threads (`during` runs beside this first round); then, as
    Stripe does, deliver again each event no copy of which got a 2xx answer,
    round after round, until every event has one or `max_rounds` have passed.
    """
    delivery = Delivery(events=len(bodies))
    queue = [event_id for event_id in bodies for _ in range(copies)]
    random.Random(seed).shuffle(queue)
    accepted: set[str] = set()
    started = time.perf_counter()
    for round_number in range(max_rounds + 1):
        if round_number:
            queue = [event_id for event_id in bodies if event_id not in accepted]
            if not queue:
                break
            delivery.redelivery_rounds += 1
            delivery.redelivered += len(queue)
            # Stripe backs off between deliveries: a database that is restarting gets time to come back.
            time.sleep(min(0.25 * round_number, 2.0))
        side = while_running(during if round_number == 0 else None)
        answers = send_concurrently(
            urls,
            queue,
            lambda session, url, event_id: post_webhook(session, url, bodies[event_id]),
            concurrency=concurrency,
        )
        if side is not None:
            side.join()
        delivery.posts += len(queue)
        delivery.answers.update(answers)
        accepted.update(event_id for event_id, answer in zip(queue, answers, strict=True) if answer == 200)
    delivery.seconds = time.perf_counter() - started
    delivery.undelivered = len(bodies) - len(accepted)
    return delivery


@dataclass
class StormCheck:
    """What the database holds after a storm, against what Stripe holds."""

    events: int = 0
    events_stored: int = 0
    events_failed: int = 0
    # Stored, but not applied (yet): the workers' backlog when the check ran.
    events_pending: int = 0
    # Events whose apply job ran more than once (a worker killed mid-job, a failed attempt).
    events_retried: int = 0
    payments: int = 0
    payments_wrong: list[str] = field(default_factory=list)
    refunds_expected: int = 0
    refunds_recorded: int = 0
    refunds_wrong: list[str] = field(default_factory=list)
    invariant_violations: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return (
            self.events_stored == self.events
            and not self.events_failed
            and not self.events_pending
            and not self.payments_wrong
            and self.refunds_recorded == self.refunds_expected
            and not self.refunds_wrong
            and not self.invariant_violations
        )


def wait_for_workers(bodies: dict[str, str], *, timeout: float = 120.0) -> float:
    """
    Wait until the workers have applied every stored event of `bodies` (none is
    `pending`), or `timeout` seconds; answers the seconds waited. The check says
    what was left.
    """
    close_old_connections()
    started = time.perf_counter()
    pending = WebhookEvent.objects.filter(stripe_event_id__in=list(bodies), outcome=WebhookEvent.Outcome.PENDING)
    while pending.exists() and time.perf_counter() - started < timeout:
        time.sleep(0.1)
    return time.perf_counter() - started


def storm_check(bodies: dict[str, str], plan: list[StormPayment]) -> StormCheck:
    """Count the stored events, and compare every payment and refund with its final state at Stripe."""
    close_old_connections()
    check = StormCheck(events=len(bodies), payments=len(plan), refunds_expected=2 * len(plan))
    stored = WebhookEvent.objects.filter(stripe_event_id__in=list(bodies))
    check.events_stored = stored.count()
    check.events_failed = stored.filter(outcome=WebhookEvent.Outcome.FAILED).count()
    check.events_pending = stored.filter(outcome=WebhookEvent.Outcome.PENDING).count()
    check.events_retried = stored.filter(attempts__gt=1).count()
    payments = {
        p.stripe_payment_intent_id: p
        for p in Payment.objects.filter(stripe_payment_intent_id__in=[s.intent_id for s in plan]).prefetch_related(
            "refunds"
        )
    }
    for expected in plan:
        payment = payments.get(expected.intent_id)
        if payment is None:
            check.payments_wrong.append(f"{expected.intent_id}: missing")
            continue
        if expected.payment_id is not None and payment.id != expected.payment_id:
            check.payments_wrong.append(f"{expected.intent_id}: adopted although the app made it")
        got = (payment.status, payment.refunded_amount)
        if got != (expected.status, expected.refunded):
            check.payments_wrong.append(
                f"{expected.intent_id}: {got} instead of {(expected.status, expected.refunded)}"
            )
        refunds = {r.stripe_refund_id: r for r in payment.refunds.all()}
        check.refunds_recorded += len(refunds)
        for refund_id, amount, status in expected.refunds:
            refund = refunds.get(refund_id)
            if refund is None or (refund.status, refund.amount) != (status, amount):
                check.refunds_wrong.append(f"{refund_id}: {refund and (refund.status, refund.amount)}")
        check.invariant_violations += invariant_violations(payment)
    return check
