"""
The one Stripe module against the local Stripe: it sends what real Stripe expects
(a PaymentIntent's description and receipt email, a refund's reason) with no switch
for the fake, and reads every page of a list.
"""

import uuid

import pytest

import core.stripe_gateway as stripe_gateway


def key() -> str:
    return str(uuid.uuid4())


def paid_intent(amount: int = 10_000, **params) -> dict:
    return stripe_gateway.payment_intent_create(
        amount=amount,
        currency="usd",
        metadata={},
        idempotency_key=key(),
        payment_method="pm_card_visa",
        confirm=True,
        **params,
    )


def test_payment_intent_create_sends_description_and_receipt_email(fake_stripe):
    """Both reach Stripe: the answer and a later retrieve carry them."""
    intent = paid_intent(description="Order 42: two mugs", receipt_email="shopper@example.com")
    assert (intent["status"], intent["description"], intent["receipt_email"]) == (
        "succeeded",
        "Order 42: two mugs",
        "shopper@example.com",
    )
    again = stripe_gateway.payment_intent_retrieve(intent["id"])
    assert (again["description"], again["receipt_email"]) == ("Order 42: two mugs", "shopper@example.com")


def test_refund_create_sends_the_reason(fake_stripe):
    """A refund's reason always goes to Stripe, which answers and keeps it."""
    intent = paid_intent()
    refund = stripe_gateway.refund_create(
        payment_intent_id=intent["id"], amount=500, idempotency_key=key(), metadata={}, reason="duplicate"
    )
    assert (refund["status"], refund["amount"], refund["reason"]) == ("succeeded", 500, "duplicate")
    assert stripe_gateway.refund_retrieve(refund["id"])["reason"] == "duplicate"


def test_refund_create_refuses_a_reason_stripe_does_not_know(fake_stripe):
    """Stripe's own refusal of a bad reason is a definite StripeRefused, not an ambiguous error."""
    intent = paid_intent()
    with pytest.raises(stripe_gateway.StripeRefused) as excinfo:
        stripe_gateway.refund_create(
            payment_intent_id=intent["id"], amount=500, idempotency_key=key(), metadata={}, reason="whim"
        )
    assert excinfo.value.http_status == 400
    assert stripe_gateway.refund_list(payment_intent_id=intent["id"]) == []


def test_refund_list_reads_every_page(fake_stripe):
    """101 refunds on one PaymentIntent: all are answered, not only the first page of 100."""
    intent = paid_intent(amount=10_000)
    made = {
        stripe_gateway.refund_create(payment_intent_id=intent["id"], amount=1, idempotency_key=key(), metadata={})["id"]
        for _ in range(101)
    }
    other = paid_intent()
    stripe_gateway.refund_create(payment_intent_id=other["id"], amount=1, idempotency_key=key(), metadata={})

    listed = stripe_gateway.refund_list(payment_intent_id=intent["id"])
    assert len(listed) == 101
    assert {refund["id"] for refund in listed} == made


def test_refund_list_failing_on_a_later_page_raises(fake_stripe):
    """A page that fails midway raises like any call: no partial list is answered as if complete."""
    intent = paid_intent(amount=10_000)
    for _ in range(101):
        stripe_gateway.refund_create(payment_intent_id=intent["id"], amount=1, idempotency_key=key(), metadata={})
    # The first page passes (a hang of 0 s spends the first rule), the next one answers 500.
    fake_stripe.add_fault("hang", method="GET", path=r"^/v1/refunds$", times=1, seconds=0)
    fake_stripe.add_fault("error500", method="GET", path=r"^/v1/refunds$", times=1)
    with pytest.raises(stripe_gateway.StripeServerError):
        stripe_gateway.refund_list(payment_intent_id=intent["id"])
    assert [rule["fired"] for rule in fake_stripe.faults()] == [1, 1]


# --- Stripe's clock (issue 16, fault 1) ------------------------------------------


def test_an_answer_is_dated_by_stripes_date_header_not_our_clock(fake_stripe, monkeypatch):
    """What Stripe answered is dated by the `Date` of its answer, whatever our clock says."""
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))
    before = datetime.now(tz=UTC).replace(microsecond=0)

    intent = stripe_gateway.payment_intent_create(amount=1000, currency="usd", metadata={}, idempotency_key=key())

    after = datetime.now(tz=UTC)
    assert before <= stripe_gateway.answered_at(intent) <= after
    assert before <= stripe_gateway.answered_at(stripe_gateway.payment_intent_retrieve(intent["id"])) <= after


def test_a_replayed_answer_is_dated_by_the_objects_creation(fake_stripe):
    """An idempotent replay sends the first answer again: its state is no newer than the object's `created`."""
    from datetime import UTC, datetime

    same_key = key()
    first = stripe_gateway.payment_intent_create(amount=1000, currency="usd", metadata={}, idempotency_key=same_key)
    replayed = stripe_gateway.payment_intent_create(amount=1000, currency="usd", metadata={}, idempotency_key=same_key)

    assert replayed["id"] == first["id"]
    assert stripe_gateway.answered_at(replayed) == datetime.fromtimestamp(first["created"], tz=UTC)


def test_a_plain_dict_is_dated_by_its_created_else_older_than_any_news():
    """A copy that lost the answer's date falls back to the object's `created`, and without one to the epoch."""
    from datetime import UTC, datetime

    assert stripe_gateway.answered_at({"created": 1_700_000_000}) == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert stripe_gateway.answered_at({}) == datetime.fromtimestamp(0, tz=UTC)
