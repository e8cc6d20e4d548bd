"""
The journal's rules are the database's: an entry that does not balance per currency
is refused at commit even through raw SQL, entries and postings are append-only,
and a posting is in its account's currency. Each balance transaction posts one
balanced entry by its reporting category.
"""

import pytest
from django.db import IntegrityError, connection, transaction

from ledger.models import Account, AccountDay, Entry, Posting
from ledger.services import balance_transactions_record, postings_for
from ledger.tests.factories import stripe_txn, unbalanced_entries


@pytest.fixture
def posted(db):
    """One charge of 100.00 usd posted: balance +96.80, fees +3.20, sales -100.00."""
    balance_transactions_record(stripe_txns=[stripe_txn(amount=10_000, fee=320)])
    return Entry.objects.get()


def raw(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def account_id(kind: str, currency: str = "usd") -> int:
    return Account.objects.get(kind=kind, currency=currency).pk


@pytest.mark.django_db
def test_a_posting_that_unbalances_an_entry_is_refused_at_commit_through_raw_sql(posted):
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            raw(
                "INSERT INTO ledger_posting (entry_id, account_id, currency, amount, occurred_on)"
                " VALUES (%s, %s, 'usd', 1, current_date)",
                [posted.pk, account_id("sales")],
            )
            # Deferred: checked when the transaction (here its savepoint's constraints) is made to commit.
            raw("SET CONSTRAINTS ALL IMMEDIATE")
    assert Posting.objects.filter(entry=posted).count() == 3
    assert unbalanced_entries() == []


@pytest.mark.django_db
def test_a_new_entry_whose_postings_do_not_sum_to_zero_is_refused(db):
    balance_transactions_record(stripe_txns=[stripe_txn()])
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            raw(
                "INSERT INTO ledger_entry (description, occurred_on, created_at)"
                " VALUES ('by hand', current_date, now())"
            )
            entry = Entry.objects.latest("id")
            Posting.objects.create(
                entry=entry, account_id=account_id("bank"), currency="usd", amount=500, occurred_on=entry.occurred_on
            )
            Posting.objects.create(
                entry=entry, account_id=account_id("sales"), currency="usd", amount=-499, occurred_on=entry.occurred_on
            )
            raw("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_balancing_in_one_currency_does_not_cover_another(db):
    """Per currency: +5 usd and -5 eur in one entry is two unbalanced currencies."""
    balance_transactions_record(stripe_txns=[stripe_txn(), stripe_txn(currency="eur")])
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            entry = Entry.objects.create(description="by hand", occurred_on="2026-01-01")
            Posting.objects.create(
                entry=entry, account_id=account_id("bank"), currency="usd", amount=5, occurred_on="2026-01-01"
            )
            Posting.objects.create(
                entry=entry, account_id=account_id("bank", "eur"), currency="eur", amount=-5, occurred_on="2026-01-01"
            )
            raw("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_posting",
        "UPDATE ledger_entry SET description = 'changed'",
        "DELETE FROM ledger_entry",
    ],
)
def test_entries_and_postings_are_append_only(posted, sql):
    with pytest.raises(IntegrityError, match="append-only"):
        with transaction.atomic():
            raw(sql)
    assert Posting.objects.filter(entry=posted).count() == 3


@pytest.mark.django_db
def test_a_posting_is_in_its_account_s_currency(posted):
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Posting.objects.create(
                entry=posted, account_id=account_id("bank"), currency="eur", amount=0, occurred_on="2026-01-01"
            )
            raw("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.parametrize(
    ("category", "amount", "fee", "expected"),
    [
        ("charge", 10_000, 320, {"stripe_balance": 9_680, "stripe_fees": 320, "sales": -10_000}),
        ("refund", -3_000, 0, {"stripe_balance": -3_000, "refunds": 3_000}),
        ("dispute", -4_000, 1_500, {"stripe_balance": -5_500, "dispute_fees": 1_500, "disputes": 4_000}),
        ("dispute_reversal", 3_000, 0, {"stripe_balance": 3_000, "disputes": -3_000}),
        ("payout", -8_639, 0, {"stripe_balance": -8_639, "bank": 8_639}),
        ("fee", -200, 0, {"stripe_balance": -200, "other": 200}),
    ],
)
def test_each_reporting_category_posts_a_balanced_entry(category, amount, fee, expected):
    """Balance gets the net, the fee account the fee, the category's account minus the gross."""
    postings = dict(postings_for(stripe_txn(category=category, amount=amount, fee=fee)))
    assert postings == expected
    assert sum(postings.values()) == 0


@pytest.mark.django_db
def test_the_daily_sums_follow_the_postings(db):
    """The report reads per-account daily sums the database keeps from the postings."""
    day = 1_780_000_000
    balance_transactions_record(stripe_txns=[stripe_txn(amount=10_000, fee=320, created=day)])
    balance_transactions_record(stripe_txns=[stripe_txn(category="refund", amount=-2_000, created=day + 60)])
    sums = {row.account.kind: row.amount for row in AccountDay.objects.select_related("account")}
    assert sums == {"stripe_balance": 7_680, "stripe_fees": 320, "sales": -10_000, "refunds": 2_000}


@pytest.mark.django_db(transaction=True)
def test_the_commit_itself_is_refused_and_nothing_of_the_transaction_stays():
    """No SET CONSTRAINTS: a real COMMIT of an unbalancing raw INSERT fails, and the row is gone."""
    balance_transactions_record(stripe_txns=[stripe_txn(amount=10_000, fee=320)])
    entry = Entry.objects.get()
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            raw(
                "INSERT INTO ledger_posting (entry_id, account_id, currency, amount, occurred_on)"
                " VALUES (%s, %s, 'usd', -1, current_date)",
                [entry.pk, account_id("bank")],
            )
    assert Posting.objects.filter(entry=entry).count() == 3
    assert unbalanced_entries() == []
