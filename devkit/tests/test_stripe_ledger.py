"""
The local Stripe's books layer (devkit/stripe_ledger.py), driven with the official
SDK as the app drives real Stripe: fees on balance transactions, their list with
Stripe's filters and paging, disputes and payouts with their events.
"""

from collections.abc import Iterator

import pytest
import stripe

from devkit.fakestripe import FakeStripe
from devkit.stripe_ledger import card_fee
from devkit.tests.helpers import make_client


@pytest.fixture(scope="module")
def fs() -> Iterator[FakeStripe]:
    with FakeStripe.start() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fs: FakeStripe) -> None:
    fs.reset()


@pytest.fixture
def client(fs: FakeStripe) -> stripe.StripeClient:
    return make_client(fs)


def paid(client, amount: int, currency: str = "usd", **params):
    params = {"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": True, **params}
    return client.v1.payment_intents.create(params=params)


def charge_id(intent) -> str:
    charge = intent.latest_charge
    return charge if isinstance(charge, str) else charge.id


def listed(client, **params) -> list:
    return list(client.v1.balance_transactions.list(params=params).auto_paging_iter())


def test_card_fees_are_stripe_s_published_prices():
    assert card_fee(10_000, "usd") == 320
    assert card_fee(2_500, "usd") == 103  # 72.5 cents rounds up
    assert card_fee(8_000, "eur") == 145
    assert card_fee(1_000, "jpy") == 36


def test_a_charge_carries_its_fee_and_a_refund_none(client):
    intent = paid(client, 10_000)
    client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 4_000})

    (charge,) = listed(client, source=charge_id(intent))
    assert (charge.type, charge.reporting_category, charge.amount, charge.fee, charge.net) == (
        "charge",
        "charge",
        10_000,
        320,
        9_680,
    )
    assert charge.fee_details[0].type == "stripe_fee" and charge.fee_details[0].amount == 320
    (refund,) = listed(client, type="refund")
    assert (refund.amount, refund.fee, refund.net) == (-4_000, 0, -4_000)


def test_a_partial_capture_s_fee_is_on_what_was_captured(client):
    intent = paid(client, 10_000, capture_method="manual")
    client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 6_000})

    (charge,) = listed(client, type="charge")
    assert (charge.amount, charge.fee) == (6_000, card_fee(6_000, "usd"))


def test_the_list_is_newest_first_and_pages_both_ways(fs, client):
    fs.seed_transactions(25, amount=1_000, start=1_780_000_000)

    everything = listed(client, limit=10)
    assert [txn.created for txn in everything] == list(range(1_780_000_024, 1_779_999_999, -1))
    first = client.v1.balance_transactions.list(params={"limit": 10})
    assert first.has_more and len(first.data) == 10
    back = client.v1.balance_transactions.list(params={"limit": 5, "ending_before": everything[10].id})
    assert [txn.id for txn in back.data] == [txn.id for txn in everything[5:10]]
    since = listed(client, created={"gte": 1_780_000_020})
    assert [txn.created for txn in since] == [1_780_000_024, 1_780_000_023, 1_780_000_022, 1_780_000_021, 1_780_000_020]


def test_sources_expand_to_their_objects(client):
    intent = paid(client, 5_000)
    (charge,) = listed(client, expand=["data.source"])
    assert charge.source.object == "charge"
    assert charge.source.payment_intent == intent.id


def test_an_unknown_filter_is_refused_as_at_stripe(client):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.balance_transactions.list(params={"colour": "blue"})


def test_an_automatic_payout_lists_what_it_paid_out_and_its_own_transaction(fs, client):
    paid(client, 10_000)
    paid(client, 2_000, "eur")
    fs.seed_transactions(150, amount=1_000)

    payout = fs.make_payout("usd")
    lines = listed(client, payout=payout["id"])

    assert len(lines) == 152
    own = [txn for txn in lines if txn.type == "payout"]
    assert len(own) == 1 and own[0].amount == -payout["amount"] and own[0].id == payout["balance_transaction"]
    assert sum(txn.net for txn in lines if txn.type != "payout") == payout["amount"]
    assert {txn.currency for txn in lines} == {"usd"}
    assert client.v1.payouts.retrieve(payout["id"]).status == "in_transit"
    # A second payout has nothing left in usd.
    with pytest.raises(Exception, match="Nothing to pay out"):
        fs.make_payout("usd")


def test_a_paid_payout_sends_paid_then_reconciliation_completed(fs, client):
    paid(client, 10_000)
    payout = fs.make_payout("usd")
    fs.pay_payout(payout["id"])

    answer = client.v1.payouts.retrieve(payout["id"])
    assert (answer.status, answer.reconciliation_status, answer.automatic) == ("paid", "completed", True)
    types = {event["type"] for event in fs.list("events") if event["data"]["object"].get("id") == payout["id"]}
    assert types == {"payout.created", "payout.paid", "payout.reconciliation_completed"}
    balance = client.v1.balance.retrieve()
    assert [(entry.currency, entry.amount) for entry in balance.available] == [("usd", 0)]


def test_a_manual_payout_takes_only_what_is_available(client):
    paid(client, 10_000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.create(params={"amount": 10_000, "currency": "usd"})
    payout = client.v1.payouts.create(params={"amount": 9_680, "currency": "usd"})
    assert (payout.automatic, payout.reconciliation_status) == (False, "not_applicable")


def test_a_dispute_withdraws_its_amount_and_fee_and_a_won_one_gives_the_amount_back(fs, client):
    intent = paid(client, 4_000)
    dispute = fs.open_dispute(payment_intent=intent.id)
    assert (dispute["amount"], dispute["status"], dispute["payment_intent"]) == (4_000, "needs_response", intent.id)

    fs.close_dispute(dispute["id"], "won")

    moves = listed(client, source=dispute["id"])
    assert sorted((txn.reporting_category, txn.amount, txn.fee) for txn in moves) == [
        ("dispute", -4_000, 1_500),
        ("dispute_reversal", 4_000, 0),
    ]
    assert client.v1.disputes.retrieve(dispute["id"]).status == "won"
    types = [event["type"] for event in fs.list("events") if event["type"].startswith("charge.dispute.")]
    assert sorted(types) == sorted(
        [
            "charge.dispute.created",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
            "charge.dispute.closed",
        ]
    )


def test_flushing_forgets_the_books(fs, client):
    paid(client, 1_000)
    fs.make_payout("usd")
    fs.flush()
    assert listed(client) == []
    assert list(client.v1.payouts.list().auto_paging_iter()) == []


def test_older_transactions_seeded_later_do_not_hide_newer_ones_from_a_created_filter(fs, client):
    intent = paid(client, 1_000)
    fs.seed_transactions(5, amount=1_000, start=1_700_000_000)

    since = listed(client, created={"gte": 1_750_000_000})

    assert [txn.source for txn in since] == [charge_id(intent)]
