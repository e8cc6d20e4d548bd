"""
Stripe's news of authorizations, captures, voids, expiries and refunds, as Stripe
documents them in an API version before 2025-03-31 (a void, an expiry and the rest
of a partial capture come with a Refund object) and in the current one (they come
without): delivered in any order and any number of times, with Stripe's
redeliveries of what failed, the books end as Stripe holds them. Money that was
never captured is never a refund.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.models import Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_reprocess_now
from webhooks.tests.factories import (
    CURRENT_API_VERSION,
    OLD_API_VERSION,
    charge_object,
    new_id,
    payment_intent_event,
    receive_and_apply,
    refund_object,
    stripe_event,
)

T0 = 1_760_000_000
AUTHORIZED = 10_000
WEEK = 7 * 86400
VERSIONS = [OLD_API_VERSION, CURRENT_API_VERSION]


@dataclass
class History:
    """What happened at Stripe, as events per object (the last of each is always delivered), and where it ended."""

    intent_id: str
    version: str
    histories: list[list[dict]] = field(default_factory=list)
    # Events that may or may not reach us: nothing final depends on them alone.
    extras: list[dict] = field(default_factory=list)
    status: str = ""
    received: int = 0
    refunded: int = 0
    refund_statuses: dict[str, str] = field(default_factory=dict)

    @property
    def old(self) -> bool:
        return self.version == OLD_API_VERSION

    def all_events(self) -> list[dict]:
        return [event for events in self.histories for event in events] + self.extras


class Builder:
    """Builds a History event by event, at Stripe's clock."""

    def __init__(self, payment: Payment | None, version: str):
        self.payment = payment
        intent_id = payment.stripe_payment_intent_id if payment else new_id("pi")
        self.history = History(intent_id=intent_id, version=version)
        self.charge_id = new_id("ch")
        self.clock = itertools.count(T0)
        self.release: dict | None = None
        # Refunds as Stripe holds them at the moment, for the charge.refunded an older version sends.
        self.at_stripe: dict[str, dict] = {}

    def event(self, event_type: str, obj: dict, created: int) -> dict:
        return stripe_event(event_type, obj, created=created, api_version=self.history.version)

    def intent_event(self, event_type: str, created: int, **intent) -> dict:
        if self.payment is None:
            intent.setdefault("intent_id", self.history.intent_id)
            intent.setdefault("amount", AUTHORIZED)
        return payment_intent_event(
            event_type,
            self.payment,
            created=created,
            api_version=self.history.version,
            capture_method="manual",
            **intent,
        )

    def charge(self, created: int, **fields) -> dict:
        fields.setdefault("amount", AUTHORIZED)
        # The authorization's deadline stays on the charge once captured, voided or refunded.
        fields.setdefault("capture_before", T0 + WEEK)
        return charge_object(intent_id=self.history.intent_id, charge_id=self.charge_id, created=T0, **fields)

    def authorize(self) -> int:
        at = next(self.clock)
        self.history.histories.append([self.intent_event("payment_intent.amount_capturable_updated", at)])
        uncaptured = self.charge(at, captured=False)
        self.history.histories.append([self.event("charge.succeeded", uncaptured, at)])
        return at

    def end_uncaptured(self, *, expired: bool) -> None:
        """A void (or an expiry): canceled, nothing received; an older version also refunds the whole charge."""
        at = next(self.clock)
        reason = ("automatic" if self.history.old else "expired") if expired else "requested_by_customer"
        self.history.histories[0].append(
            self.intent_event("payment_intent.canceled", at, cancellation_reason=reason, amount_received=0)
        )
        if self.history.old:
            release = self.stripe_refund(AUTHORIZED, at, reason="expired_uncaptured_charge" if expired else None)
            charge = self.charge(at, captured=False, amount_refunded=AUTHORIZED, refunded=True, refunds=[release])
            self.history.extras += [
                self.event("refund.created", release, at),
                self.event("charge.refunded", charge, at),
                self.event("charge.refund.updated", release, at),
            ]
        elif expired:
            self.history.extras.append(self.event("charge.expired", self.charge(at, captured=False), at))
        self.history.status = Payment.Status.CANCELED

    def capture(self, captured: int) -> None:
        at = next(self.clock)
        rest = AUTHORIZED - captured
        self.history.received = captured
        self.history.status = Payment.Status.SUCCEEDED
        self.history.histories[0].append(self.intent_event("payment_intent.succeeded", at, amount_received=captured))
        charge = self.charge(
            at, amount_captured=captured, amount_refunded=rest if self.history.old else 0, refunded=False
        )
        self.history.histories[1].append(self.event("charge.captured", charge, at))
        if self.history.old and rest:
            self.release = self.stripe_refund(rest, at)
            self.history.extras += [self.event("refund.created", self.release, at), self.charge_refunded(at)]

    def dashboard_refund(self, amount: int, life: list[str], update_types: list[str]) -> None:
        """A refund made in Stripe's dashboard, living through `life`; a charge.refunded follows a success."""
        refund = self.stripe_refund(amount, next(self.clock))
        events = []
        for step, status in enumerate(life):
            at = next(self.clock)
            self.at_stripe[refund["id"]] = {**refund, "status": status}
            event_type = "refund.created" if step == 0 else update_types[step - 1]
            events.append(self.event(event_type, self.at_stripe[refund["id"]], at))
            if status == "succeeded":
                self.history.extras.append(self.charge_refunded(at))
        self.history.histories.append(events)
        self.history.refund_statuses[refund["id"]] = life[-1]
        if life[-1] == "succeeded":
            self.history.refunded += amount
        received, refunded = self.history.received, self.history.refunded
        if refunded:
            self.history.status = Payment.Status.REFUNDED if refunded == received else Payment.Status.PARTIALLY_REFUNDED

    def stripe_refund(self, amount: int, at: int, reason: str | None = None) -> dict:
        return refund_object(
            intent_id=self.history.intent_id, amount=amount, created=at, reason=reason, charge_id=self.charge_id
        )

    def charge_refunded(self, at: int) -> dict:
        """charge.refunded as Stripe sends it now: an older version embeds the refunds, the release included."""
        refunds = ([self.release] if self.release else []) + list(self.at_stripe.values())
        succeeded = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
        captured = self.history.received
        if not self.history.old:
            return self.event(
                "charge.refunded", self.charge(at, amount_captured=captured, amount_refunded=succeeded), at
            )
        charge = self.charge(
            at,
            amount_captured=captured,
            amount_refunded=succeeded,
            refunded=succeeded >= AUTHORIZED,
            refunds=[dict(r) for r in refunds],
        )
        return self.event("charge.refunded", charge, at)


# --- Delivering, and checking the books ------------------------------------------


def deliver(events: list[dict]) -> None:
    """Hand each event to the webhook's service in this order; then, as Stripe does, redeliver what failed."""
    for event in events:
        receive_and_apply(event)
    for _ in range(len(events) + 1):
        failed = list(WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED))
        if not failed:
            return
        for event in failed:
            webhook_event_reprocess_now(event=event)
    errors = list(WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).values_list("type", "error"))
    raise AssertionError(f"events never accepted: {errors}")


def assert_books(history: History) -> None:
    payment = Payment.objects.get(stripe_payment_intent_id=history.intent_id)
    assert (payment.status, payment.amount, payment.amount_received, payment.refunded_amount) == (
        history.status,
        AUTHORIZED,
        history.received,
        history.refunded,
    )
    assert payment.amount_capturable == 0
    assert payment.books_mismatch == ""
    refunds = dict(Refund.objects.filter(payment=payment).values_list("stripe_refund_id", "status"))
    assert refunds == history.refund_statuses
    assert payment.card_last4 == "4242"
    assert payment.capture_before is not None


def manual_payment(owner) -> Payment:
    return PaymentFactory(
        user=owner,
        amount=AUTHORIZED,
        capture_method=Payment.CaptureMethod.MANUAL,
        stripe_payment_intent_id=new_id("pi"),
    )


def orders(events: list[dict]) -> list[list[dict]]:
    """As sent, reversed, and each event twice, interleaved."""
    return [events, events[::-1], [e for pair in zip(events, events[::-1], strict=True) for e in pair]]


# --- Each case, in its natural order, reversed and duplicated ----------------------


@pytest.mark.django_db
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order", range(3))
@pytest.mark.parametrize("expired", [False, True], ids=["void", "expiry"])
def test_a_void_or_an_expiry_is_canceled_with_nothing_received_or_refunded(owner, version, order, expired):
    build = Builder(manual_payment(owner), version)
    build.authorize()
    build.end_uncaptured(expired=expired)

    deliver(orders(build.history.all_events())[order])

    assert_books(build.history)
    assert not Refund.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order", range(3))
def test_a_partial_capture_receives_its_part_and_only_real_refunds_count(owner, version, order):
    """Authorized 10000, captured 6000, a dashboard refund of 1000: received 6000, refunded 1000, one refund."""
    build = Builder(manual_payment(owner), version)
    build.authorize()
    build.capture(6000)
    build.dashboard_refund(1000, ["succeeded"], [])

    deliver(orders(build.history.all_events())[order])

    assert_books(build.history)
    assert Refund.objects.get().amount == 1000


@pytest.mark.django_db
def test_an_old_versions_expiry_refund_alone_cancels_the_authorization(owner):
    """refund.created with reason expired_uncaptured_charge is all that came: canceled, nothing refunded."""
    payment = manual_payment(owner)
    expiry = refund_object(
        intent_id=payment.stripe_payment_intent_id, amount=AUTHORIZED, reason="expired_uncaptured_charge"
    )

    deliver([stripe_event("refund.created", expiry, created=T0, api_version=OLD_API_VERSION)])

    payment.refresh_from_db()
    assert (payment.status, payment.amount_received, payment.refunded_amount) == (Payment.Status.CANCELED, 0, 0)
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_an_old_versions_release_before_the_capture_news_waits_for_it(owner):
    """
    Before the capture is known here, a refund not ours (older version) may be a
    release: the event fails (Stripe delivers it again) until the capture's news
    has come, and is then told apart: the uncaptured rest is no refund.
    """
    build = Builder(manual_payment(owner), OLD_API_VERSION)
    build.authorize()
    build.capture(6000)
    release = next(e for e in build.history.extras if e["type"] == "refund.created")

    stored = receive_and_apply(release)

    assert stored.outcome == WebhookEvent.Outcome.FAILED
    assert "not known to be captured yet" in stored.error
    deliver(build.history.all_events())
    stored.refresh_from_db()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert_books(build.history)


@pytest.mark.django_db
def test_a_current_versions_refund_before_the_capture_news_counts_at_once(owner):
    """From 2025-03-31 on a Refund object always gives money back: recorded at once, what was received follows."""
    build = Builder(manual_payment(owner), CURRENT_API_VERSION)
    build.authorize()
    build.capture(6000)
    build.dashboard_refund(2500, ["succeeded"], [])
    [refund_event] = build.history.histories[-1]

    deliver([refund_event])
    payment = Payment.objects.get()
    assert (payment.refunded_amount, payment.amount_received) == (2500, 2500)

    deliver(build.history.all_events())
    assert_books(build.history)


@pytest.mark.django_db
@pytest.mark.parametrize("order", range(3))
def test_an_amount_changed_before_confirmation_is_followed_and_a_full_refund_fits(owner, order):
    """
    Created for 10000, the PaymentIntent's amount went up to 12000 before it was
    paid: the payment follows it, and a full refund of 12000 fits the books (it
    used to break the constraint on every delivery).
    """
    payment = PaymentFactory(user=owner, amount=10_000, stripe_payment_intent_id=new_id("pi"))
    intent_id = payment.stripe_payment_intent_id
    refund = refund_object(intent_id=intent_id, amount=12_000, created=T0 + 3)
    events = [
        payment_intent_event("payment_intent.created", payment, created=T0),
        payment_intent_event("payment_intent.requires_action", payment, amount=12_000, created=T0 + 1),
        payment_intent_event("payment_intent.succeeded", payment, amount=12_000, created=T0 + 2),
        stripe_event("refund.created", refund, created=T0 + 3),
        stripe_event("charge.refunded", charge_object(intent_id=intent_id, amount=12_000, amount_refunded=12_000)),
    ]

    deliver(orders(events)[order])

    payment.refresh_from_db()
    assert (payment.status, payment.amount, payment.amount_received, payment.refunded_amount) == (
        Payment.Status.REFUNDED,
        12_000,
        12_000,
        12_000,
    )
    assert payment.books_mismatch == ""


@pytest.mark.django_db
def test_refunds_beyond_what_was_received_are_recorded_flagged_and_never_fail(owner):
    """Captured 6000, Stripe reports 7000 refunded: the refunds are kept, the books hold at 6000 and say why."""
    build = Builder(manual_payment(owner), CURRENT_API_VERSION)
    build.authorize()
    build.capture(6000)
    intent_id = build.history.intent_id
    deliver(build.history.all_events())

    deliver(
        [
            stripe_event("refund.created", refund_object(intent_id=intent_id, amount=4000), created=T0 + 10),
            stripe_event("refund.created", refund_object(intent_id=intent_id, amount=3000), created=T0 + 11),
        ]
    )

    payment = Payment.objects.get()
    assert (payment.status, payment.amount_received, payment.refunded_amount) == (Payment.Status.REFUNDED, 6000, 6000)
    assert "add up to 7000, more than the 6000 received" in payment.books_mismatch
    assert Refund.objects.filter(status=Refund.Status.SUCCEEDED).count() == 2
    assert not WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).exists()


# --- Any history, any order, any duplication --------------------------------------

REFUND_LIVES = [
    ["succeeded"],
    ["pending", "succeeded"],
    ["succeeded", "failed"],
    ["pending", "failed"],
    ["pending", "canceled"],
    ["pending", "requires_action", "succeeded"],
]


def _update_types(status: str) -> list[str]:
    if status == "failed":
        return ["refund.failed", "refund.updated", "charge.refund.updated"]
    return ["refund.updated", "charge.refund.updated"]


@st.composite
def capture_histories(draw, payment):
    """An authorization's possible history at Stripe: voided, expired, or captured (in part) and refunded."""
    build = Builder(payment, draw(st.sampled_from(VERSIONS)))
    build.authorize()
    ending = draw(st.sampled_from(["void", "expiry", "capture"]))
    if ending != "capture":
        build.end_uncaptured(expired=ending == "expiry")
        return build.history
    captured = draw(st.integers(min_value=1, max_value=AUTHORIZED))
    build.capture(captured)
    left = captured
    for life in draw(st.lists(st.sampled_from(REFUND_LIVES), max_size=3)):
        amount = draw(st.integers(min_value=1, max_value=max(1, left // 2)))
        # An older version's dashboard refund of exactly the uncaptured rest cannot be told from
        # the release itself by its events alone (the amounts then still add up): not drawn.
        if amount > left or (build.history.old and amount == AUTHORIZED - captured):
            continue
        left -= amount
        update_types = [draw(st.sampled_from(_update_types(status))) for status in life[1:]]
        build.dashboard_refund(amount, life, update_types)
    return build.history


@st.composite
def deliveries(draw, history: History):
    """Some of each object's events (always its last), some extras, shuffled, some twice."""
    chosen = []
    for events in history.histories:
        chosen += [event for event in events[:-1] if draw(st.booleans())] + [events[-1]]
    chosen += [event for event in history.extras if draw(st.booleans())]
    duplicates = draw(st.lists(st.sampled_from(chosen), max_size=4))
    return draw(st.permutations(chosen + duplicates))


@pytest.mark.django_db
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), ours=st.booleans())
def test_any_capture_void_or_refund_history_in_any_order_ends_in_stripes_books(owner, data, ours):
    payment = manual_payment(owner) if ours else None
    history = data.draw(capture_histories(payment))

    deliver(data.draw(deliveries(history)))

    assert_books(history)
