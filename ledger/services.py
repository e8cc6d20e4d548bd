"""
The books' use cases: record Stripe's balance transactions (each once, each
posting one balanced journal entry), fetch them after an event, sync everything
since the last sync, and reconcile a payout with the transactions it paid out.

Stripe is read with no lock held (core.stripe_gateway); what was read is then
written in one short transaction per page. Every write here is idempotent: a
transaction is stored under its unique `txn_` id and its entry under its
one-to-one link, both with INSERT … ON CONFLICT DO NOTHING, so the same
transaction seen by a webhook's job, by the periodic sync and by a payout's
reconciliation, in any order and at once, is recorded and posted once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from ledger.models import Account, BalanceTransaction, Entry, Payout, Posting, SyncState, UnmatchedItem
from payments.models import Dispute, Payment
from refunds.models import Refund

logger = logging.getLogger(__name__)

# Stripe's reporting categories of money a payout carries that are not its own.
PAYOUT_CATEGORIES = ("payout", "payout_reversal")
# Where each reporting category's gross amount is posted (the rest goes to OTHER).
CATEGORY_ACCOUNTS = {
    "charge": Account.Kind.SALES,
    "refund": Account.Kind.REFUNDS,
    "refund_failure": Account.Kind.REFUNDS,
    "dispute": Account.Kind.DISPUTES,
    "dispute_reversal": Account.Kind.DISPUTES,
    "payout": Account.Kind.BANK,
    "payout_reversal": Account.Kind.BANK,
}
# How many transactions are written per transaction of ours (a page of Stripe's list).
BATCH_SIZE = 500


def _aware(seconds: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC) if seconds is not None else None


def postings_for(stripe_txn: dict) -> list[tuple[str, int]]:
    """
    The (account kind, amount) postings of one Stripe balance transaction, by its
    `reporting_category`: the Stripe balance gets `net`, the fee account `fee`
    (dispute fees apart from processing fees) and the category's account `-amount`,
    so they sum to zero (net = amount - fee). Zero amounts are left out. Pure.
    """
    category = stripe_txn.get("reporting_category") or stripe_txn.get("type") or ""
    fee_kind = Account.Kind.DISPUTE_FEES if category == "dispute" else Account.Kind.STRIPE_FEES
    amount, fee = int(stripe_txn["amount"]), int(stripe_txn.get("fee") or 0)
    net = amount - fee
    postings = [
        (Account.Kind.STRIPE_BALANCE, net),
        (fee_kind, fee),
        (CATEGORY_ACCOUNTS.get(category, Account.Kind.OTHER), -amount),
    ]
    return [(kind, value) for kind, value in postings if value]


def _accounts(currencies: Iterable[str]) -> dict[tuple[str, str], int]:
    """(kind, currency) -> account id, every kind of each currency (made once, race-safe)."""
    currencies = sorted(set(currencies))
    rows = [(kind, currency) for currency in currencies for kind in Account.Kind.values]
    if not rows:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Account._meta.db_table} (kind, currency) SELECT * FROM unnest(%s::text[], %s::text[])"
            " ON CONFLICT (kind, currency) DO NOTHING",
            [[kind for kind, _ in rows], [currency for _, currency in rows]],
        )
    return {
        (kind, currency): pk
        for pk, kind, currency in Account.objects.filter(currency__in=currencies).values_list("id", "kind", "currency")
    }


def _source_facts(stripe_txn: dict) -> tuple[str, str, str]:
    """(source id, source object kind, PaymentIntent id) of a transaction, its `source` expanded or not."""
    source = stripe_txn.get("source")
    if isinstance(source, dict):
        intent = stripe_gateway.id_of(source.get("payment_intent")) or ""
        if not intent and isinstance(source.get("charge"), dict):
            intent = stripe_gateway.id_of(source["charge"].get("payment_intent")) or ""
        return str(source.get("id") or ""), str(source.get("object") or ""), intent
    source_id = str(source or "")
    kinds = {"ch": "charge", "py": "charge", "re": "refund", "pyr": "refund", "dp": "dispute", "po": "payout"}
    return source_id, kinds.get(source_id.split("_", 1)[0], ""), ""


@dataclass
class Recorded:
    """What `balance_transactions_record` did: transactions new here, and entries posted."""

    new: int = 0
    posted: int = 0


# BalanceTransaction's columns as `balance_transactions_record` writes them, and their SQL types.
_TRANSACTION_COLUMNS = (
    ("stripe_id", "text"),
    ("type", "text"),
    ("reporting_category", "text"),
    ("amount", "bigint"),
    ("fee", "bigint"),
    ("fee_details", "jsonb"),
    ("net", "bigint"),
    ("currency", "text"),
    ("exchange_rate", "numeric"),
    ("source_id", "text"),
    ("source_type", "text"),
    ("payment_intent_id", "text"),
    ("payout_id", "bigint"),
    ("payment_id", "uuid"),
    ("refund_id", "uuid"),
    ("dispute_id", "bigint"),
    ("available_on", "timestamptz"),
    ("stripe_created", "timestamptz"),
)
_INSERT_TRANSACTIONS = (
    f"INSERT INTO {BalanceTransaction._meta.db_table}"
    f" ({', '.join(name for name, _ in _TRANSACTION_COLUMNS)}, recorded_at)"
    f" SELECT *, now() FROM unnest({', '.join(f'%s::{sql_type}[]' for _, sql_type in _TRANSACTION_COLUMNS)})"
    " ON CONFLICT (stripe_id) DO NOTHING RETURNING stripe_id"
)


def balance_transactions_record(*, stripe_txns: list[dict], payout: Payout | None = None) -> Recorded:
    """
    Record Stripe balance transactions (dicts as Stripe answers them, `source`
    expanded or an id) and post one journal entry for each not yet posted; with
    `payout`, link them to it. Matches each to our payment (by the source's
    PaymentIntent), refund (`re_` id) or dispute (`dp_` id) when known here.
    One transaction (the caller's, if any); the entry's balance is checked by the
    database at commit. No network call. Safe to repeat and to run concurrently:
    ON CONFLICT DO NOTHING on the transaction's id and on the entry's link.
    """
    # One of each, in id order: two recorders at once then wait on each other's rows
    # in the same order, never in a deadlock.
    stripe_txns = sorted({txn["id"]: txn for txn in stripe_txns}.values(), key=lambda txn: txn["id"])
    if not stripe_txns:
        return Recorded()
    result = Recorded()
    with transaction.atomic():
        facts = {txn["id"]: _source_facts(txn) for txn in stripe_txns}
        intents = {intent for _, _, intent in facts.values() if intent}
        payments = dict(
            Payment.objects.filter(stripe_payment_intent_id__in=intents).values_list("stripe_payment_intent_id", "id")
        )
        refund_ids = {source for source, kind, _ in facts.values() if kind == "refund"}
        refunds = dict(Refund.objects.filter(stripe_refund_id__in=refund_ids).values_list("stripe_refund_id", "id"))
        dispute_ids = {source for source, kind, _ in facts.values() if kind == "dispute"}
        disputes = dict(
            Dispute.objects.filter(stripe_dispute_id__in=dispute_ids).values_list("stripe_dispute_id", "id")
        )
        columns: dict[str, list] = {name: [] for name, _ in _TRANSACTION_COLUMNS}
        for txn in stripe_txns:
            source_id, kind, intent = facts[txn["id"]]
            amount, fee = int(txn["amount"]), int(txn.get("fee") or 0)
            row = {
                "stripe_id": txn["id"],
                "type": txn.get("type") or "",
                "reporting_category": txn.get("reporting_category") or "",
                "amount": amount,
                "fee": fee,
                "fee_details": json.dumps(txn.get("fee_details") or []),
                "net": int(txn["net"]) if txn.get("net") is not None else amount - fee,
                "currency": str(txn["currency"]).lower(),
                "exchange_rate": txn.get("exchange_rate"),
                "source_id": source_id,
                "source_type": kind,
                "payment_intent_id": intent,
                "payout_id": payout.pk if payout is not None else None,
                "payment_id": payments.get(intent),
                "refund_id": refunds.get(source_id) if kind == "refund" else None,
                "dispute_id": disputes.get(source_id) if kind == "dispute" else None,
                "available_on": _aware(txn.get("available_on")),
                "stripe_created": _aware(txn["created"]),
            }
            for name, values in columns.items():
                values.append(row[name])
        with connection.cursor() as cursor:
            # One statement of arrays, not Django's bulk_create of thousands of parameters.
            cursor.execute(_INSERT_TRANSACTIONS, list(columns.values()))
            result.new = len(cursor.fetchall())
        stored = {
            stripe_id: (pk, payout_id)
            for stripe_id, pk, payout_id in BalanceTransaction.objects.filter(
                stripe_id__in=columns["stripe_id"]
            ).values_list("stripe_id", "id", "payout_id")
        }
        if payout is not None:
            # Seen before its payout was known: link it now.
            BalanceTransaction.objects.filter(
                id__in=[pk for pk, payout_id in stored.values() if payout_id is None]
            ).update(payout=payout)
        result.posted = _post_entries(stripe_txns, stored)
    return result


def _post_entries(stripe_txns: list[dict], stored: dict[str, tuple[int, int | None]]) -> int:
    """One entry per transaction that has none (ON CONFLICT on its link), with its postings."""
    by_pk = {stored[txn["id"]][0]: txn for txn in stripe_txns}
    descriptions, days = [], []
    for txn in by_pk.values():
        descriptions.append(f"{txn.get('reporting_category') or txn.get('type')} {txn['id']}"[:255])
        days.append(_aware(txn["created"]).date())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Entry._meta.db_table} (balance_transaction_id, description, occurred_on, created_at)"
            " SELECT *, now() FROM unnest(%s::bigint[], %s::text[], %s::date[])"
            " ON CONFLICT (balance_transaction_id) DO NOTHING RETURNING id, balance_transaction_id",
            [list(by_pk), descriptions, days],
        )
        new_entries = cursor.fetchall()
    if not new_entries:
        return 0
    accounts = _accounts(str(by_pk[pk]["currency"]).lower() for _, pk in new_entries)
    postings = []
    for entry_id, pk in new_entries:
        txn = by_pk[pk]
        currency = str(txn["currency"]).lower()
        day = _aware(txn["created"]).date()
        for kind, amount in postings_for(txn):
            postings.append((entry_id, accounts[(kind, currency)], currency, amount, day))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Posting._meta.db_table} (entry_id, account_id, currency, amount, occurred_on)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::date[])",
            [list(column) for column in zip(*postings, strict=True)],
        )
    return len(new_entries)


# --- Fetching after an event, and the periodic sync -----------------------------


def balance_transactions_fetch(*, source_id: str) -> Recorded:
    """
    Read from Stripe every balance transaction of one object (a charge `ch_`, a
    refund `re_`, a dispute `dp_`: Stripe's `source` filter) and record them. The
    read holds no lock. Raises the gateway's StripeError (the job retries).
    """
    found = list(stripe_gateway.balance_transaction_list(source=source_id))
    return balance_transactions_record(stripe_txns=found)


@dataclass
class SyncResult:
    """What one `ledger_sync` saw, recorded new and posted."""

    seen: int = 0
    new: int = 0
    posted: int = 0
    since: int = 0
    until: int = 0


def ledger_sync(*, since: int | None = None) -> SyncResult:
    """
    Page through every balance transaction Stripe has created since `since` (Unix
    seconds; default: the newest one the last sync saw, itself included, since
    Stripe's `created` is in whole seconds), recording each (a transaction of
    ours per BATCH_SIZE); then move the sync's mark to the newest seen. Safe to
    run twice at once or to repeat: recording is idempotent, and the mark only
    moves forward. Raises the gateway's StripeError: what was written stays, the
    mark does not move, the next run reads those pages again.
    """
    state, _ = SyncState.objects.get_or_create(name="balance_transactions")
    start = state.last_created if since is None else since
    result = SyncResult(since=start, until=start)
    batch: list[dict] = []
    for txn in stripe_gateway.balance_transaction_list(created={"gte": start}):
        batch.append(txn)
        result.until = max(result.until, int(txn["created"]))
        if len(batch) >= BATCH_SIZE:
            _record_batch(batch, result)
            batch = []
    _record_batch(batch, result)
    with transaction.atomic():
        state = SyncState.objects.select_for_update().get(pk=state.pk)
        state.last_created = max(state.last_created, result.until)
        state.last_run_at = timezone.now()
        state.save()
    return result


def _record_batch(batch: list[dict], result: SyncResult) -> None:
    if not batch:
        return
    recorded = balance_transactions_record(stripe_txns=batch)
    result.seen += len(batch)
    result.new += recorded.new
    result.posted += recorded.posted


# --- Payouts ---------------------------------------------------------------------


def payout_record(*, stripe_payout: dict) -> Payout:
    """
    Record a Stripe payout (as Stripe answers it) or bring ours up to date: its
    status and reconciliation status are Stripe's as read. Locks the payout row.
    No network call. Safe to repeat.
    """
    fields = {
        "amount": int(stripe_payout["amount"]),
        "currency": str(stripe_payout["currency"]).lower(),
        "status": stripe_payout.get("status") or "",
        "automatic": bool(stripe_payout.get("automatic", True)),
        "arrival_date": _aware(stripe_payout.get("arrival_date")),
        "stripe_created": _aware(stripe_payout["created"]),
        "stripe_reconciliation_status": stripe_payout.get("reconciliation_status") or "",
    }
    with transaction.atomic():
        payout, created = Payout.objects.select_for_update().get_or_create(
            stripe_payout_id=stripe_payout["id"], defaults=fields
        )
        if not created:
            for name, value in fields.items():
                setattr(payout, name, value)
            payout.save()
    return payout


def payout_reconcile(*, payout_id: str) -> Payout:
    """
    Reconcile a payout with our books: read it and every page of its balance
    transactions from Stripe (no lock held), record them linked to it (and post
    the payout's own transaction: Stripe balance to bank), match each to our
    payments, refunds and disputes, and when it is `paid`: mark it `reconciled`
    if the transactions' net equals the payout's amount exactly and every one is
    matched; otherwise `unmatched`, each problem in its unmatched queue with the
    reason. While Stripe's own reconciliation is `in_progress` and the sums do not
    agree yet, it stays `pending` (the `payout.reconciliation_completed` event
    brings the rest). Raises the gateway's StripeError (the job retries). Safe to repeat.
    """
    stripe_payout = stripe_gateway.payout_retrieve(payout_id)
    # Its own transaction (and a failure's, which gives the money back) name it as their source.
    found = list(stripe_gateway.balance_transaction_list(source=payout_id))
    if stripe_payout.get("automatic"):
        found += stripe_gateway.balance_transaction_list(payout=payout_id)
    payout = payout_record(stripe_payout=stripe_payout)
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout.pk)
        balance_transactions_record(stripe_txns=found, payout=payout)
        _rematch(payout)
        _judge(payout, stripe_payout)
    return payout


def _rematch(payout: Payout) -> None:
    """Link the payout's transactions recorded before their payment, refund or dispute was known here."""
    unmatched = payout.transactions.filter(payment__isnull=True, refund__isnull=True, dispute__isnull=True)
    for txn in unmatched.exclude(source_type="payout"):
        if txn.source_type == "refund":
            txn.refund = Refund.objects.filter(stripe_refund_id=txn.source_id).first()
        elif txn.source_type == "dispute":
            txn.dispute = Dispute.objects.filter(stripe_dispute_id=txn.source_id).first()
        if txn.payment_intent_id:
            txn.payment = Payment.objects.filter(stripe_payment_intent_id=txn.payment_intent_id).first()
        txn.save(update_fields=["payment", "refund", "dispute"])


def _judge(payout: Payout, stripe_payout: dict) -> None:
    transactions = payout.transactions.all()
    carried = transactions.exclude(reporting_category__in=PAYOUT_CATEGORIES)
    sums = carried.aggregate(
        gross=Sum("amount", filter=Q(reporting_category="charge"), default=0),
        refunds=Sum("amount", filter=Q(reporting_category__in=("refund", "refund_failure")), default=0),
        disputes=Sum("amount", filter=Q(reporting_category__in=("dispute", "dispute_reversal")), default=0),
        fees=Sum("fee", default=0),
        net=Sum("net", default=0),
    )
    payout.transaction_count = carried.count()
    for name, value in sums.items():
        setattr(payout, name, value)
    UnmatchedItem.objects.filter(payout=payout).delete()
    if payout.status != "paid":
        payout.save()
        return
    problems: list[tuple[BalanceTransaction | None, str]] = []
    if not stripe_payout.get("automatic"):
        problems.append((None, "A manual payout: Stripe does not say which transactions it paid out."))
    elif sums["net"] != payout.amount:
        if payout.stripe_reconciliation_status == "in_progress":
            payout.save()
            return
        problems.append((None, f"Its transactions' net is {sums['net']}, the payout is {payout.amount}."))
    own = transactions.filter(type="payout").first()
    if stripe_payout.get("automatic") and (own is None or own.amount != -payout.amount):
        problems.append((own, "The payout's own balance transaction is missing or not its amount."))
    for txn in carried.filter(payment__isnull=True, refund__isnull=True, dispute__isnull=True):
        problems.append((txn, f"No payment, refund or dispute here for {txn.source_type or 'source'} {txn.source_id}."))
    for txn, reason in problems:
        UnmatchedItem.objects.create(payout=payout, balance_transaction=txn, reason=reason[:500])
    if problems:
        payout.reconciliation = Payout.Reconciliation.UNMATCHED
        payout.reconciliation_note = problems[0][1][:500]
        payout.reconciled_at = None
    else:
        payout.reconciliation = Payout.Reconciliation.RECONCILED
        payout.reconciliation_note = ""
        payout.reconciled_at = timezone.now()
    payout.save()
