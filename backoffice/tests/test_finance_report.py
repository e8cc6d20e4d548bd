"""
The finance report (backoffice/finance.py) and its CSV exports: only for
`ledger.view_finance_report` (the Finance group); figures from the books.
"""

import csv
import io

import pytest

from ledger.models import Payout
from ledger.services import balance_transactions_record, payout_record
from ledger.tests.factories import finance_user, stripe_txn
from payments.tests.factories import UserFactory

DAY = 1_780_000_000  # 2026-05-28 UTC
REPORT = "/admin/ledger/payout/report/"
JOURNAL = "/admin/ledger/payout/report/journal.csv"


@pytest.fixture
def books(db):
    """A charge of 100.00 (fee 3.20), a refund of 30.00 and a lost dispute of 20.00 (fee 15.00), paid out."""
    payout = payout_record(
        stripe_payout={"id": "po_report", "amount": 3_180, "currency": "usd", "status": "paid", "created": DAY + 900}
    )
    balance_transactions_record(
        stripe_txns=[
            stripe_txn(amount=10_000, fee=320, created=DAY),
            stripe_txn(category="refund", amount=-3_000, created=DAY + 60),
            stripe_txn(category="dispute", amount=-2_000, fee=1_500, created=DAY + 120),
        ],
        payout=payout,
    )
    balance_transactions_record(stripe_txns=[stripe_txn(category="payout", amount=-3_180, created=DAY + 900)])
    return payout


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [REPORT, JOURNAL, "payout-lines"])
def test_staff_without_the_finance_permission_are_refused(client, books, url):
    url = f"/admin/ledger/payout/{books.pk}/lines.csv" if url == "payout-lines" else url
    client.force_login(UserFactory(username="sam", is_staff=True))
    assert client.get(url).status_code == 403
    client.force_login(finance_user())
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_the_day_shows_gross_refunds_disputes_fees_and_net(client, books):
    client.force_login(finance_user())
    response = client.get(REPORT, {"since": "2026-05-28", "until": "2026-05-28"})
    assert response.status_code == 200
    (day,) = response.context["days"]
    assert (day.currency, day.gross, day.refunds, day.disputes, day.fees) == ("usd", 10_000, -3_000, -2_000, 1_820)
    assert day.net == 10_000 - 3_000 - 2_000 - 1_820 == 3_180
    assert day.paid_out == 3_180
    page = response.content.decode()
    assert "$100.00" in page and "$31.80" in page


@pytest.mark.django_db
def test_a_payout_s_row_puts_its_amount_beside_its_lines_net(client, books):
    from ledger.services import _judge

    _judge(books, {"automatic": True})
    client.force_login(finance_user())
    (row,) = client.get(REPORT).context["payouts"]
    assert (row.gross, row.refunds, row.disputes, row.fees, row.net) == (10_000, -3_000, -2_000, 1_820, 3_180)
    assert row.payout_amount == 3_180 and row.agrees


@pytest.mark.django_db
def test_the_trial_balance_lists_every_account_and_sums_to_zero(client, books):
    client.force_login(finance_user())
    response = client.get(REPORT)
    trial = response.context["trial_balance"]
    balances = {account.kind: amount for account, amount in trial.rows}
    assert balances == {
        # All paid out: Stripe holds nothing of it.
        "stripe_balance": 0,
        "bank": 3_180,
        "sales": -10_000,
        "refunds": 3_000,
        "disputes": 2_000,
        "stripe_fees": 320,
        "dispute_fees": 1_500,
        "other": 0,
    }
    assert trial.totals == {"usd": 0}
    # The total reads as money, as every other figure on the page.
    total_row = response.content.decode().split('<tr class="total">')[1].split("</tr>")[0]
    assert "$0.00" in total_row


@pytest.mark.django_db
def test_the_journal_exports_one_line_per_posting(client, books):
    client.force_login(finance_user())
    rows = rows_of(client.get(JOURNAL))
    assert rows[0] == ["entry", "day", "description", "balance_transaction", "account", "currency", "debit", "credit"]
    assert len(rows) == 1 + 3 + 2 + 3 + 2
    debits = sum(int(row[6]) for row in rows[1:] if row[6])
    credits = sum(int(row[7]) for row in rows[1:] if row[7])
    assert debits == credits
    sales = [row for row in rows[1:] if row[4] == "sales"]
    assert sales == [[sales[0][0], "2026-05-28", sales[0][2], sales[0][3], "sales", "usd", "", "10000"]]


@pytest.mark.django_db
def test_a_payout_s_lines_export_as_csv(client, books):
    client.force_login(finance_user())
    rows = rows_of(client.get(f"/admin/ledger/payout/{books.pk}/lines.csv"))
    assert [row[3] for row in rows[1:]] == ["charge", "refund", "dispute"]
    assert [int(row[8]) for row in rows[1:]] == [9_680, -3_000, -3_500]


@pytest.mark.django_db
def test_the_books_cannot_be_changed_in_the_admin(client, books, superuser):
    client.force_login(superuser)
    assert client.get(f"/admin/ledger/payout/{books.pk}/delete/").status_code == 403
    assert client.get("/admin/ledger/entry/add/").status_code == 403
    assert Payout.objects.count() == 1


@pytest.mark.django_db
def test_balance_transactions_are_found_by_their_id_source_or_payment_intent_and_filtered_by_category(client, books):
    from ledger.models import BalanceTransaction

    refund = BalanceTransaction.objects.get(reporting_category="refund")
    refund.payment_intent_id = "pi_found"
    refund.save(update_fields=["payment_intent_id"])
    client.force_login(finance_user())

    def listed(**query):
        return [
            row.stripe_id for row in client.get("/admin/ledger/balancetransaction/", query).context["cl"].result_list
        ]

    assert listed(q=refund.stripe_id) == listed(q=refund.source_id) == listed(q="pi_found") == [refund.stripe_id]
    assert listed(q=refund.stripe_id.upper()) == []
    assert sorted(listed(reporting_category="dispute")) == list(
        BalanceTransaction.objects.filter(reporting_category="dispute").values_list("stripe_id", flat=True)
    )
