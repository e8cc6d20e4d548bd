"""
A balance transaction is recorded, and posts its entry, once however often and in
whatever order it is seen: by the job after its webhook, by the periodic sync, by
both, twice each, and by two recorders at the same moment.
"""

import threading
from contextlib import contextmanager
from unittest import mock

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.models import BalanceTransaction, Entry, SyncState
from ledger.services import balance_transactions_fetch, balance_transactions_record, ledger_sync
from ledger.tests.factories import stripe_txn, unbalanced_entries

CATEGORIES = {
    "charge": st.integers(min_value=50, max_value=10**8),
    "refund": st.integers(min_value=-(10**8), max_value=-1),
    "dispute": st.integers(min_value=-(10**8), max_value=-1),
    "dispute_reversal": st.integers(min_value=1, max_value=10**8),
}


@st.composite
def balance_transactions(draw):
    category = draw(st.sampled_from(sorted(CATEGORIES)))
    amount = draw(CATEGORIES[category])
    fee = draw(st.integers(min_value=0, max_value=abs(amount))) if category in ("charge", "dispute") else 0
    return stripe_txn(
        category=category,
        amount=amount,
        fee=fee,
        currency=draw(st.sampled_from(["usd", "eur", "jpy"])),
        created=draw(st.integers(min_value=1_700_000_000, max_value=1_800_000_000)),
    )


@st.composite
def sightings(draw):
    """Transactions, and an order in which each is seen twice, each time by webhook or by sync."""
    txns = draw(st.lists(balance_transactions(), min_size=1, max_size=8, unique_by=lambda txn: txn["id"]))
    seen = [(index, draw(st.sampled_from(["webhook", "sync"]))) for index in range(len(txns)) for _ in range(2)]
    return txns, draw(st.permutations(seen))


class Rollback(Exception):
    pass


@contextmanager
def rolled_back():
    """Each example in a transaction undone afterwards (Hypothesis runs many in one test)."""
    try:
        with transaction.atomic():
            yield
            raise Rollback
    except Rollback:
        pass


def listing(txns):
    """The gateway's list, as Stripe would answer a `source=` or `created[gte]=` filter over `txns`."""

    def answer(**filters):
        found = txns
        if "source" in filters:
            found = [txn for txn in txns if txn["source"] == filters["source"]]
        if "created" in filters:
            found = [txn for txn in found if txn["created"] >= filters["created"]["gte"]]
        return iter(sorted(found, key=lambda txn: txn["created"], reverse=True))

    return answer


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sightings())
def test_the_same_transactions_seen_twice_in_any_order_by_webhook_and_sync_post_one_entry_each(seen):
    txns, order = seen
    with rolled_back():
        for index, channel in order:
            txn = txns[index]
            if channel == "webhook":
                with mock.patch("core.stripe_gateway.balance_transaction_list", listing(txns)):
                    balance_transactions_fetch(source_id=txn["source"])
            else:
                # Stripe holds them all; a sync reads from its mark, or, asked to, from the start.
                with mock.patch("core.stripe_gateway.balance_transaction_list", listing(txns)):
                    ledger_sync(since=None if index % 2 else 0)
        assert BalanceTransaction.objects.count() == len(txns)
        assert Entry.objects.count() == len(txns)
        assert sorted(Entry.objects.values_list("balance_transaction__stripe_id", flat=True)) == sorted(
            txn["id"] for txn in txns
        )
        for txn in txns:
            stored = BalanceTransaction.objects.get(stripe_id=txn["id"])
            assert (stored.amount, stored.fee, stored.net) == (txn["amount"], txn["fee"], txn["net"])
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert unbalanced_entries() == []


@pytest.mark.django_db
def test_the_sync_mark_moves_forward_only(db):
    newer, older = stripe_txn(created=1_780_000_100), stripe_txn(created=1_780_000_000)
    with mock.patch("core.stripe_gateway.balance_transaction_list", listing([newer])):
        ledger_sync()
    with mock.patch("core.stripe_gateway.balance_transaction_list", listing([older])):
        ledger_sync(since=0)
    assert SyncState.objects.get().last_created == newer["created"]


@pytest.mark.django_db(transaction=True)
def test_two_recorders_at_once_record_and_post_each_transaction_once():
    """Two transactions of ours record the same 60 transactions at the same moment, in opposite orders."""
    txns = [stripe_txn(amount=1_000 + n) for n in range(60)]
    start = threading.Barrier(2)
    errors = []

    def record(batch):
        try:
            start.wait()
            balance_transactions_record(stripe_txns=batch)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=record, args=(batch,)) for batch in (txns, txns[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert BalanceTransaction.objects.count() == Entry.objects.count() == 60
    assert unbalanced_entries() == []
