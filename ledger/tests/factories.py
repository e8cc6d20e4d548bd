"""
The books' test helpers: Stripe balance transactions as Stripe shapes them, the
local Stripe's events delivered to the webhook endpoint, and the jobs the books
queue after a commit run here.
"""

from __future__ import annotations

import itertools
import json
import time

from django.contrib.auth.models import Group, Permission
from django.db import connection

from devkit.workers import run_jobs_in_process
from payments.tests.factories import UserFactory
from webhooks.tests.factories import post_event

_ids = itertools.count(1)


def stripe_txn(
    *,
    txn_id: str | None = None,
    category: str = "charge",
    amount: int = 10_000,
    fee: int | None = None,
    currency: str = "usd",
    source: str | dict | None = None,
    created: int | None = None,
) -> dict:
    """A balance transaction as Stripe answers it (`fee` default: 2.9% + 30 of a charge, else 0)."""
    if fee is None:
        fee = round(amount * 0.029) + 30 if category == "charge" else 0
    kinds = {"charge": ("charge", "ch"), "refund": ("refund", "re"), "dispute": ("adjustment", "dp")}
    kinds |= {"dispute_reversal": ("adjustment", "dp"), "payout": ("payout", "po")}
    txn_type, prefix = kinds.get(category, (category, "x"))
    n = next(_ids)
    return {
        "id": txn_id or f"txn_test{n:010d}",
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created or int(time.time()),
        "created": created or int(time.time()),
        "currency": currency,
        "description": None,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "currency": currency, "type": "stripe_fee"}] if fee else [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source or f"{prefix}_test{n:010d}",
        "status": "available",
        "type": txn_type,
    }


def unbalanced_entries() -> list[tuple[int, str, int]]:
    """(entry, currency, sum) of each entry not summing to zero in a currency: [] when the books balance."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT entry_id, currency, sum(amount) FROM ledger_posting"
            " GROUP BY entry_id, currency HAVING sum(amount) <> 0"
        )
        return cursor.fetchall()


def deliver_local_stripe_events(client, fake_stripe, delivered: set[str]) -> int:
    """
    POST every event the local Stripe has made and `delivered` lacks to
    /webhooks/stripe/, signed, as its webhooks would, and apply them; answers how
    many. The books' jobs queued after the commits are left for `run_books_jobs`.
    """
    events = sorted(fake_stripe.list("events"), key=lambda event: event["created"])
    count = 0
    for event in events:
        if event["id"] in delivered:
            continue
        delivered.add(event["id"])
        assert post_event(client, json.dumps(event)).status_code == 200
        count += 1
    return count


def run_books_jobs() -> list[tuple[str, str]]:
    """Run every queued job (the books' fetches and reconciliations among them) here; answers what ran."""
    return run_jobs_in_process(due_now=True).ran


def finance_user(username: str = "fiona"):
    """Staff in a Finance group with the books' view permissions and `ledger.view_finance_report`."""
    user = UserFactory(username=username, email=f"{username}@example.com", is_staff=True)
    group, _ = Group.objects.get_or_create(name="Finance (tests)")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="ledger", codename__startswith="view_"))
    user.groups.add(group)
    return user
