"""
Payout reconciliation: a payout's events reach the books through the webhook endpoint
(Stripe's payout.* types are stored, ignored by the handlers, and still heard by the
ledger); every page of its balance transactions is read; what does not match goes to
the unmatched queue with the reason; the sums must agree exactly.
"""

from unittest import mock

import pytest
from django.core.management import call_command

import core.stripe_gateway as stripe_gateway
from devkit.stripe_ledger import card_fee
from ledger.models import BalanceTransaction, Entry, Payout, SyncState, UnmatchedItem
from ledger.services import payout_reconcile
from ledger.tests.factories import deliver_local_stripe_events, run_books_jobs, unbalanced_entries
from refunds.tests.factories import paid_payment_at_stripe
from webhooks.models import WebhookEvent


@pytest.mark.django_db
def test_payout_events_reach_the_books_and_a_paid_payout_is_reconciled(
    client, owner_api, fake_stripe, django_capture_on_commit_callbacks
):
    """Nothing recorded before: the payout's reconciliation records its lines itself, and posts them."""
    payment = paid_payment_at_stripe(owner_api, amount=4_200)
    stripe_payout = fake_stripe.make_payout("usd")
    fake_stripe.pay_payout(stripe_payout["id"])
    with django_capture_on_commit_callbacks(execute=True):
        delivered = set()
        # Only the payout's events: the charge is known to the books through its payout alone.
        for event in fake_stripe.list("events"):
            if not event["type"].startswith("payout."):
                delivered.add(event["id"])
        assert deliver_local_stripe_events(client, fake_stripe, delivered) == 3
    assert set(WebhookEvent.objects.values_list("type", "outcome")) == {
        ("payout.created", "ignored"),
        ("payout.paid", "ignored"),
        ("payout.reconciliation_completed", "ignored"),
    }
    ran = run_books_jobs()
    assert [name for name, _ in ran] == ["ledger.reconcile_payout"] * len(ran) and ran

    payout = Payout.objects.get(stripe_payout_id=stripe_payout["id"])
    assert payout.reconciliation == Payout.Reconciliation.RECONCILED
    assert payout.amount == payout.net == 4_200 - card_fee(4_200, "usd")
    charge = BalanceTransaction.objects.get(reporting_category="charge")
    assert charge.payment == payment and charge.payout == payout
    assert Entry.objects.count() == 2
    assert unbalanced_entries() == []


@pytest.mark.django_db
def test_every_page_of_the_payout_is_read_and_transactions_not_ours_are_queued_with_the_reason(fake_stripe):
    """250 charges made elsewhere (no payment here): all recorded, each unmatched with why; not reconciled."""
    fake_stripe.seed_transactions(250, amount=1_000)
    stripe_payout = fake_stripe.make_payout("usd")
    fake_stripe.pay_payout(stripe_payout["id"])

    payout = payout_reconcile(payout_id=stripe_payout["id"])

    assert payout.transactions.count() == 251
    assert payout.net == payout.amount == 250 * (1_000 - card_fee(1_000, "usd"))
    assert payout.reconciliation == Payout.Reconciliation.UNMATCHED
    reasons = list(UnmatchedItem.objects.filter(payout=payout).values_list("reason", flat=True))
    assert len(reasons) == 250
    assert all(reason.startswith("No payment, refund or dispute here for charge ch_") for reason in reasons)
    assert Entry.objects.count() == 251
    # Once more: nothing doubles.
    payout_reconcile(payout_id=stripe_payout["id"])
    assert Entry.objects.count() == 251
    assert UnmatchedItem.objects.count() == 250


@pytest.mark.django_db
def test_a_payout_whose_amount_differs_from_its_lines_by_one_cent_is_unmatched(owner_api, fake_stripe):
    paid_payment_at_stripe(owner_api, amount=3_000)
    stripe_payout = fake_stripe.make_payout("usd")
    fake_stripe.pay_payout(stripe_payout["id"])
    real = stripe_gateway.payout_retrieve

    def one_cent_more(payout_id):
        return {**real(payout_id), "amount": stripe_payout["amount"] + 1}

    with mock.patch("core.stripe_gateway.payout_retrieve", one_cent_more):
        payout = payout_reconcile(payout_id=stripe_payout["id"])

    assert payout.reconciliation == Payout.Reconciliation.UNMATCHED
    expected = f"Its transactions' net is {stripe_payout['amount']}, the payout is {stripe_payout['amount'] + 1}."
    assert payout.reconciliation_note == expected
    assert set(UnmatchedItem.objects.values_list("reason", flat=True)) == {
        expected,
        "The payout's own balance transaction is missing or not its amount.",
    }


@pytest.mark.django_db
def test_a_payout_in_transit_is_recorded_but_not_yet_judged(owner_api, fake_stripe):
    paid_payment_at_stripe(owner_api, amount=3_000)
    stripe_payout = fake_stripe.make_payout("usd")

    payout = payout_reconcile(payout_id=stripe_payout["id"])

    assert (payout.status, payout.reconciliation) == ("in_transit", Payout.Reconciliation.PENDING)
    assert payout.net == payout.amount
    assert UnmatchedItem.objects.count() == 0


@pytest.mark.django_db
def test_sync_ledger_pages_through_everything_since_its_mark(fake_stripe, capsys):
    """The command reads every page; run again, it reads from its mark and records nothing twice."""
    fake_stripe.seed_transactions(230, amount=1_500, start=1_780_000_000)

    call_command("sync_ledger")
    assert "sync_ledger: 230 seen, 230 new, 230 posted" in capsys.readouterr().out
    assert SyncState.objects.get().last_created == 1_780_000_229

    call_command("sync_ledger")
    # Stripe's `created` is in seconds: the mark's own second is read again, and not recorded again.
    assert "sync_ledger: 1 seen, 0 new, 0 posted" in capsys.readouterr().out
    assert BalanceTransaction.objects.count() == Entry.objects.count() == 230
    assert unbalanced_entries() == []


def test_sync_ledger_is_a_periodic_job():
    from procrastinate.contrib.django import app

    assert "ledger.sync_ledger" in app.tasks
    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert "ledger.sync_ledger" in periodic


@pytest.mark.django_db
def test_balance_available_makes_the_books_sync(client, fake_stripe, django_capture_on_commit_callbacks):
    """Stripe's `balance.available` (stored, ignored by the handlers) queues a sync: what is new gets recorded."""
    from webhooks.tests.factories import post_event, stripe_event

    fake_stripe.seed_transactions(3, amount=1_000)
    balance = {"object": "balance", "available": [{"amount": 2_907, "currency": "usd"}], "livemode": False}
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, stripe_event("balance.available", balance)).status_code == 200
    assert WebhookEvent.objects.get().outcome == "ignored"

    assert [name for name, _ in run_books_jobs()] == ["ledger.sync_ledger"]
    assert BalanceTransaction.objects.count() == Entry.objects.count() == 3


@pytest.mark.django_db
def test_the_payouts_list_links_to_the_finance_report_for_finance_only(client, superuser):
    from ledger.tests.factories import finance_user
    from payments.tests.factories import UserFactory

    client.force_login(finance_user())
    assert 'id="finance-report-link"' in client.get("/admin/ledger/payout/").content.decode()
    viewer = UserFactory(username="viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_payout"))
    client.force_login(viewer)
    page = client.get("/admin/ledger/payout/")
    assert page.status_code == 200 and "finance-report-link" not in page.content.decode()


@pytest.mark.django_db
def test_a_manual_payout_posts_its_own_transaction_and_is_unmatched_for_want_of_lines(owner_api, fake_stripe):
    """Stripe itemizes only automatic payouts: a manual one moves balance to bank, and says why it is not reconciled."""
    from devkit.tests.helpers import make_client

    paid_payment_at_stripe(owner_api, amount=3_000)
    manual = make_client(fake_stripe).v1.payouts.create(params={"amount": 1_000, "currency": "usd"})
    fake_stripe.pay_payout(manual.id)

    payout = payout_reconcile(payout_id=manual.id)

    assert payout.reconciliation == Payout.Reconciliation.UNMATCHED
    assert payout.reconciliation_note == "A manual payout: Stripe does not say which transactions it paid out."
    own = BalanceTransaction.objects.get(type="payout")
    assert (own.amount, own.payout) == (-1_000, payout)
    assert own.entry.postings.get(account__kind="bank").amount == 1_000


@pytest.mark.django_db
def test_a_failed_payout_gives_the_money_back_to_the_stripe_balance(owner_api, fake_stripe):
    paid_payment_at_stripe(owner_api, amount=3_000)
    stripe_payout = fake_stripe.make_payout("usd")
    fake_stripe.fail_payout(stripe_payout["id"])

    payout = payout_reconcile(payout_id=stripe_payout["id"])

    assert (payout.status, payout.reconciliation) == ("failed", Payout.Reconciliation.PENDING)
    from backoffice.finance import trial_balance

    balances = {account.kind: amount for account, amount in trial_balance().rows}
    assert balances["bank"] == 0
    assert balances["stripe_balance"] == 3_000 - card_fee(3_000, "usd")
    assert unbalanced_entries() == []
