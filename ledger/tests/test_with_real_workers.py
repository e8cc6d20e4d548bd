"""
What `make run` does, with real processes: the local Stripe sends its own webhooks
to a live server, two real background workers apply them and run the books' jobs.
A payment, a partial refund by staff, then a payout made and paid at the local
Stripe (`manage.py local_payout`): the payout reconciles and the finance report
shows the payment's fee, the refund, the net and the payout.
"""

import time

import pytest
from django.core.management import call_command

from backoffice.finance import payout_figures
from devkit.stripe_ledger import card_fee
from ledger.models import BalanceTransaction, Payout
from ledger.tests.factories import unbalanced_entries
from payments.tests.factories import api_client_for
from refunds.tests.factories import paid_payment_at_stripe, request_refund

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_password_hashing")]

WAIT_SECONDS = 30


def wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"waited {WAIT_SECONDS} s for {what}")


def test_a_payment_a_refund_and_a_payout_reach_the_books_through_the_workers(owner, staff, stripe_webhooks, capsys):
    payment = paid_payment_at_stripe(api_client_for(owner), amount=6_000)
    assert request_refund(api_client_for(staff), payment, {"amount": 1_000}, key="refund-1").status_code == 201
    wait_for(lambda: BalanceTransaction.objects.count() == 2, "the charge's and the refund's balance transactions")

    call_command("local_payout", "--currency", "usd")
    assert "paid" in capsys.readouterr().out
    wait_for(
        lambda: Payout.objects.filter(reconciliation=Payout.Reconciliation.RECONCILED).exists(), "the reconciliation"
    )

    payout = Payout.objects.get()
    fee = card_fee(6_000, "usd")
    assert payout.amount == payout.net == 6_000 - fee - 1_000
    (row,) = payout_figures()
    assert (row.gross, row.refunds, row.fees, row.net, row.payout_amount) == (
        6_000,
        -1_000,
        fee,
        payout.amount,
        payout.amount,
    )
    assert BalanceTransaction.objects.get(reporting_category="charge").payment == payment
    assert unbalanced_entries() == []
