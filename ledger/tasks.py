"""
The books' background jobs (procrastinate, queue "ledger"): fetch the balance
transactions of one Stripe object after its event, reconcile a payout after its
`payout.*` event, and `sync_ledger` on a schedule (settings.JOBS_SCHEDULE). Each
is safe to run twice: recording is idempotent (ledger.services).
"""

from __future__ import annotations

import logging

from procrastinate import RetryStrategy
from procrastinate.contrib.django import app

from ledger import services

logger = logging.getLogger(__name__)

QUEUE = "ledger"
# Stripe not answering: try again after 4, 8, 16... seconds, for about a day.
RETRY = RetryStrategy(max_attempts=16, exponential_wait=2)


@app.task(name="ledger.fetch_balance_transactions", queue=QUEUE, retry=RETRY)
def fetch_balance_transactions(source_id: str) -> str:
    """Record the balance transactions of Stripe object `source_id` (ch_, re_, dp_); answers what was done."""
    recorded = services.balance_transactions_fetch(source_id=source_id)
    return f"{source_id}: {recorded.new} new, {recorded.posted} posted"


@app.task(name="ledger.reconcile_payout", queue=QUEUE, retry=RETRY)
def reconcile_payout(payout_id: str) -> str:
    """Record payout `payout_id` and, once paid, reconcile it (ledger.services.payout_reconcile)."""
    payout = services.payout_reconcile(payout_id=payout_id)
    return f"{payout_id}: {payout.status}, {payout.reconciliation}"


@app.task(
    name="ledger.sync_ledger",
    queue="maintenance",
    queueing_lock="ledger.sync_ledger",
    lock="ledger.sync_ledger",
    retry=RetryStrategy(max_attempts=3, wait=60),
)
def sync_ledger(timestamp: int) -> str:
    """Every balance transaction since the last sync (`manage.py sync_ledger`); one run at a time."""
    result = services.ledger_sync()
    summary = f"sync_ledger: {result.seen} seen, {result.new} new, {result.posted} posted"
    logger.info("%s", summary)
    return summary
