"""
Any subset of a payment's and its refunds' event histories that holds each
object's last event, delivered in any order and any number of times, ends in
Stripe's final state (hypothesis: random histories, subsets, orders, duplicates).
"""

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.workers import run_jobs_in_process
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_receive
from webhooks.tests.factories import (
    charge_object,
    dispute_object,
    new_id,
    payment_intent_event,
    refund_object,
    stripe_event,
)

EXAMPLES = 300
T0 = 1_760_000_000
AMOUNT = 3000

# Ways a PaymentIntent may wander before it ends (each a non-final status).
WANDERING = [
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.processing",
    "payment_intent.amount_capturable_updated",
]
ENDINGS = ["payment_intent.succeeded", "payment_intent.canceled", *WANDERING]
# A refund's life at Stripe: the statuses it passes through, in order.
REFUND_LIVES = [
    ["succeeded"],
    ["pending", "succeeded"],
    ["succeeded", "failed"],
    ["pending", "failed"],
    ["pending", "canceled"],
    ["pending", "requires_action", "succeeded"],
]
FINAL_PAYMENT_STATUS = {
    "payment_intent.payment_failed": Payment.Status.FAILED,
    "payment_intent.requires_action": Payment.Status.REQUIRES_ACTION,
    "payment_intent.processing": Payment.Status.PROCESSING,
    "payment_intent.amount_capturable_updated": Payment.Status.REQUIRES_CAPTURE,
    "payment_intent.canceled": Payment.Status.CANCELED,
}


@dataclass
class History:
    """What happened at Stripe: each object's events in order, and where they ended."""

    intent_id: str
    histories: list[list[dict]] = field(default_factory=list)
    # Events that change nothing Stripe's final state depends on (a current
    # charge.refunded names no refund): delivered or not, at random.
    extras: list[dict] = field(default_factory=list)
    payment_status: str = ""
    refund_statuses: dict[str, str] = field(default_factory=dict)
    refunded: int = 0
    dispute: tuple[str, str] | None = None


@st.composite
def stripe_histories(draw, payment):
    """A random but possible history of `payment`'s PaymentIntent (None: one the app never made)."""
    intent_id = payment.stripe_payment_intent_id if payment else new_id("pi")
    intent = {"intent_id": intent_id, "amount": AMOUNT} if payment is None else {}
    clock = iter(range(T0, T0 + 1000))
    types = ["payment_intent.created", *draw(st.lists(st.sampled_from(WANDERING), max_size=3))]
    types.append(draw(st.sampled_from(ENDINGS)))
    history = History(intent_id=intent_id)
    history.histories.append([payment_intent_event(t, payment, created=next(clock), **intent) for t in types])
    if types[-1] != "payment_intent.succeeded":
        history.payment_status = FINAL_PAYMENT_STATUS[types[-1]]
        return history

    left = AMOUNT
    for life in draw(st.lists(st.sampled_from(REFUND_LIVES), max_size=3)):
        amount = draw(st.integers(min_value=1, max_value=max(1, left // 2)))
        if amount > left:
            break
        left -= amount
        refund = refund_object(intent_id=intent_id, amount=amount)
        events = []
        for step, status in enumerate(life):
            event_type = "refund.created" if step == 0 else draw(st.sampled_from(_update_types(status)))
            events.append(stripe_event(event_type, {**refund, "status": status}, created=next(clock)))
        if life[-1] == "succeeded":
            history.refunded += amount
            charge = charge_object(intent_id=intent_id, amount=AMOUNT, amount_refunded=history.refunded)
            history.extras.append(stripe_event("charge.refunded", charge, created=next(clock)))
        history.histories.append(events)
        history.refund_statuses[refund["id"]] = life[-1]
    if draw(st.booleans()):
        dispute = dispute_object(intent_id=intent_id)
        outcome = draw(st.sampled_from(["won", "lost"]))
        history.histories.append(
            [
                stripe_event("charge.dispute.created", dispute, created=next(clock)),
                stripe_event("charge.dispute.updated", {**dispute, "status": "under_review"}, created=next(clock)),
                stripe_event("charge.dispute.closed", {**dispute, "status": outcome}, created=next(clock)),
            ]
        )
        history.dispute = (dispute["id"], outcome)
    if history.refunded == 0:
        history.payment_status = Payment.Status.SUCCEEDED
    elif history.refunded == AMOUNT:
        history.payment_status = Payment.Status.REFUNDED
    else:
        history.payment_status = Payment.Status.PARTIALLY_REFUNDED
    return history


def _update_types(status):
    if status == "failed":
        return ["refund.failed", "refund.updated", "charge.refund.updated"]
    return ["refund.updated", "charge.refund.updated"]


@st.composite
def deliveries(draw, history):
    """Some of each object's events (always its last), shuffled, some delivered twice."""
    chosen = []
    for events in history.histories:
        chosen += [event for event in events[:-1] if draw(st.booleans())] + [events[-1]]
    chosen += [event for event in history.extras if draw(st.booleans())]
    duplicates = draw(st.lists(st.sampled_from(chosen), max_size=4))
    return draw(st.permutations(chosen + duplicates))


def deliver_and_apply(events):
    """
    Hand every event to the webhook's service, as the view does once the
    signature checks out (signing is tested on its own; skipping it here buys
    examples), and let a worker apply it at once (in-process); an attempt that
    fails (a refund before any event of its PaymentIntent, which Stripe cannot
    be asked about here) is retried later, as the worker's backoff does, until
    every event is applied.
    """
    for event in events:
        webhook_event_receive(event=event)
        run_jobs_in_process()
    for _ in range(3):
        if not WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.PENDING).exists():
            return
        run_jobs_in_process(due_now=True)
    stuck = WebhookEvent.objects.exclude(outcome__in=[WebhookEvent.Outcome.PROCESSED, WebhookEvent.Outcome.IGNORED])
    details = list(stuck.values_list("type", "outcome", "attempts", "error"))[:5]
    raise AssertionError(f"{stuck.count()} event(s) were never applied: {details}")


def assert_converged(history):
    payment = Payment.objects.get(stripe_payment_intent_id=history.intent_id)
    assert payment.status == history.payment_status
    assert payment.refunded_amount == history.refunded
    refunds = dict(Refund.objects.filter(payment=payment).values_list("stripe_refund_id", "status"))
    assert refunds == history.refund_statuses
    if history.dispute:
        assert list(Dispute.objects.filter(payment=payment).values_list("stripe_dispute_id", "status")) == [
            history.dispute
        ]


@pytest.mark.django_db
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # `owner` is only read: sharing it between examples is harmless (and saves a password hash each).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), ours=st.booleans())
def test_any_order_and_any_duplication_ends_in_stripes_final_state(owner, data, ours):
    payment = PaymentFactory(user=owner, amount=AMOUNT, stripe_payment_intent_id=new_id("pi")) if ours else None
    history = data.draw(stripe_histories(payment))

    deliver_and_apply(data.draw(deliveries(history)))

    assert_converged(history)
