"""
The proof of the books: a day of activity against the local Stripe (payments in two
currencies, a partial and two full refunds, a dispute lost and one won), Stripe's
events delivered to the webhook endpoint, then a payout per currency, paid. The
journal balances per currency, each payout reconciles exactly, and the finance
report's net equals the payout.
"""

import pytest

from backoffice.finance import daily_figures, payout_figures, trial_balance
from devkit.stripe_ledger import DISPUTE_FEES, card_fee
from ledger.models import Account, BalanceTransaction, Entry, Payout, UnmatchedItem
from ledger.tests.factories import (
    deliver_local_stripe_events,
    finance_user,
    run_books_jobs,
    unbalanced_entries,
)
from payments.models import Dispute
from refunds.tests.factories import paid_payment_at_stripe, request_refund

USD_PAYMENTS = (10_000, 5_000, 2_500, 4_000, 3_000)
EUR_PAYMENTS = (8_000, 1_200)


def expected_payouts() -> dict[str, int]:
    """What Stripe owes per currency after the day below, worked out by hand from its prices."""
    usd = sum(amount - card_fee(amount, "usd") for amount in USD_PAYMENTS)
    usd -= 3_000 + 5_000  # a partial refund of the first, the second refunded in full
    usd -= 4_000 + DISPUTE_FEES["usd"]  # the dispute lost: amount and fee gone
    usd -= DISPUTE_FEES["usd"]  # the dispute won: the amount came back, the fee did not
    eur = sum(amount - card_fee(amount, "eur") for amount in EUR_PAYMENTS) - 1_200
    return {"usd": usd, "eur": eur}


@pytest.fixture
def a_day_at_stripe(client, owner_api, staff_api, fake_stripe, django_capture_on_commit_callbacks):
    """The day's activity, its events delivered and applied, and the books' jobs run."""
    delivered: set[str] = set()
    with django_capture_on_commit_callbacks(execute=True):
        usd = [paid_payment_at_stripe(owner_api, amount=amount) for amount in USD_PAYMENTS]
        eur = [paid_payment_at_stripe(owner_api, amount=amount, currency="eur") for amount in EUR_PAYMENTS]
        assert request_refund(staff_api, usd[0], {"amount": 3_000}, key="partial").status_code == 201
        assert request_refund(staff_api, usd[1], {}, key="full-usd").status_code == 201
        assert request_refund(staff_api, eur[1], {}, key="full-eur").status_code == 201
        lost = fake_stripe.open_dispute(payment_intent=usd[3].stripe_payment_intent_id)
        won = fake_stripe.open_dispute(payment_intent=usd[4].stripe_payment_intent_id)
        fake_stripe.close_dispute(lost["id"], "lost")
        fake_stripe.close_dispute(won["id"], "won")
        deliver_local_stripe_events(client, fake_stripe, delivered)
    run_books_jobs()
    return delivered


def pay_out_everything(client, fake_stripe, delivered, capture) -> dict[str, dict]:
    with capture(execute=True):
        payouts = {currency: fake_stripe.make_payout(currency) for currency in ("usd", "eur")}
        for payout in payouts.values():
            fake_stripe.pay_payout(payout["id"])
        deliver_local_stripe_events(client, fake_stripe, delivered)
    run_books_jobs()
    return payouts


@pytest.mark.django_db
def test_the_day_is_in_the_books_and_each_payout_reconciles_exactly(
    client, fake_stripe, a_day_at_stripe, django_capture_on_commit_callbacks
):
    """Every balance transaction posted once, the books balance, and each payout reconciles with its lines."""
    assert Dispute.objects.count() == 2
    # Before the payout: 7 charges, 3 refunds, 2 dispute withdrawals and 1 reversal, each recorded from its event.
    assert BalanceTransaction.objects.count() == 13
    assert Entry.objects.count() == 13

    payouts = pay_out_everything(client, fake_stripe, a_day_at_stripe, django_capture_on_commit_callbacks)

    assert {currency: payout["amount"] for currency, payout in payouts.items()} == expected_payouts()
    assert BalanceTransaction.objects.count() == Entry.objects.count() == 15
    assert unbalanced_entries() == []
    for currency, stripe_payout in payouts.items():
        payout = Payout.objects.get(stripe_payout_id=stripe_payout["id"])
        assert payout.status == "paid"
        assert payout.reconciliation == Payout.Reconciliation.RECONCILED, payout.reconciliation_note
        assert payout.net == payout.amount == stripe_payout["amount"]
        # Every line of the payout is one of ours: payments, refunds, disputes.
        lines = payout.transactions.exclude(type="payout")
        assert lines.count() == (11 - 1 if currency == "usd" else 3)
        assert not lines.filter(payment__isnull=True).exists()
        assert lines.filter(reporting_category="refund", refund__isnull=False).count() == (
            2 if currency == "usd" else 1
        )
        assert lines.filter(reporting_category__startswith="dispute", dispute__isnull=False).count() == (
            3 if currency == "usd" else 0
        )
    assert UnmatchedItem.objects.count() == 0


@pytest.mark.django_db
def test_the_finance_report_s_net_equals_the_payout_and_the_stripe_balance_is_what_stripe_holds(
    client, fake_stripe, a_day_at_stripe, django_capture_on_commit_callbacks
):
    """Per payout and summed over the days, net == the payout's amount; the trial balance sums to zero."""
    payouts = pay_out_everything(client, fake_stripe, a_day_at_stripe, django_capture_on_commit_callbacks)

    rows = {row.currency: row for row in payout_figures()}
    for currency, stripe_payout in payouts.items():
        assert rows[currency].net == rows[currency].payout_amount == stripe_payout["amount"]
        assert rows[currency].agrees
    days = daily_figures(since=_first_day(), until=_last_day())
    for currency, stripe_payout in payouts.items():
        in_currency = [row for row in days if row.currency == currency]
        assert sum(row.net for row in in_currency) == stripe_payout["amount"]
        assert sum(row.paid_out for row in in_currency) == stripe_payout["amount"]
        gross = sum(row.gross for row in in_currency)
        assert gross == sum(USD_PAYMENTS if currency == "usd" else EUR_PAYMENTS)
        fees = sum(row.fees for row in in_currency)
        amounts = USD_PAYMENTS if currency == "usd" else EUR_PAYMENTS
        dispute_fees = 2 * DISPUTE_FEES["usd"] if currency == "usd" else 0
        assert fees == sum(card_fee(amount, currency) for amount in amounts) + dispute_fees

    balances = trial_balance()
    assert balances.totals == {"usd": 0, "eur": 0}
    stripe_balance = {account.currency: amount for account, amount in balances.rows if account.kind == "stripe_balance"}
    held = {
        entry["currency"]: entry["amount"] for entry in fake_stripe._call("GET", "/v1/balance", auth=True)["available"]
    }
    assert stripe_balance == held == {"usd": 0, "eur": 0}
    bank = {account.currency: amount for account, amount in balances.rows if account.kind == Account.Kind.BANK}
    assert bank == {currency: payout["amount"] for currency, payout in payouts.items()}

    client.force_login(finance_user())
    page = client.get("/admin/ledger/payout/report/")
    assert page.status_code == 200
    for stripe_payout in payouts.values():
        assert stripe_payout["id"] in page.content.decode()


def _first_day():
    return BalanceTransaction.objects.order_by("stripe_created").first().stripe_created.date()


def _last_day():
    return BalanceTransaction.objects.order_by("stripe_created").last().stripe_created.date()
