"""
The books at scale: `sync_ledger` over 100,000 balance transactions at the local
Stripe (time, memory), and the finance report at 1,000,000 payments (target < 200 ms).

    .venv/bin/python -m benchmarks.ledger [--transactions 100000] [--payments 1000000] [--runs 5]

- Sync: a database of its own (recreated) and a local Stripe holding
  `--transactions` charge balance transactions (seeded in its memory, a second
  apart); `ledger_sync` from the start, in this process, reads them through the SDK
  in pages of 100 (Stripe's largest) and records and posts each, 500 per
  transaction of ours. Reported: wall time, transactions/s, the process's peak
  resident memory before and after, and a second sync from its mark (nothing new).
- Report (and the books' admin lists): a second database holding `--payments` payments over a year, each with
  its charge balance transaction and journal entry (a tenth refunded, in part),
  and a payout per day and currency, written with SQL (the journal's row triggers
  are skipped while seeding, `session_replication_role = replica`; the per-day
  account sums are then built in one statement). The finance report page, as a
  superuser through Django's test client: median and worst of `--runs` requests,
  and its SQL queries. The database is kept between runs when it holds enough.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import psycopg

from benchmarks.harness import ADMIN_DSN, fresh_database, machine, print_table, setup_django
from devkit.fakestripe import FakeStripe

SYNC_DATABASE = "paymentsite_bench_ledger"
REPORT_DATABASE = "paymentsite_bench_ledger_report"
SEED_CHUNK = 10_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_sync(transactions: int) -> list[list[object]]:
    from django.conf import settings

    from ledger.models import BalanceTransaction, Entry
    from ledger.services import ledger_sync

    rows = []
    with FakeStripe.start() as stripe_server:
        settings.STRIPE_API_BASE = stripe_server.api_base
        start = int(time.time()) - transactions - 10
        for offset in range(0, transactions, SEED_CHUNK):
            count = min(SEED_CHUNK, transactions - offset)
            stripe_server.seed_transactions(count, amount=2_000 + offset % 7, start=start + offset)
        before = peak_rss_mb()
        started = time.perf_counter()
        result = ledger_sync(since=0)
        seconds = time.perf_counter() - started
        after = peak_rss_mb()
        assert result.seen == transactions and BalanceTransaction.objects.count() == Entry.objects.count()
        rows.append(
            [
                f"{transactions:,} from the start",
                f"{seconds:.1f} s",
                f"{transactions / seconds:,.0f}",
                f"{before:.0f} MB -> {after:.0f} MB",
                f"{result.new:,} new, {result.posted:,} posted",
            ]
        )
        started = time.perf_counter()
        again = ledger_sync()
        seconds = time.perf_counter() - started
        rows.append(
            ["again, from its mark", f"{seconds * 1000:.0f} ms", "-", f"{peak_rss_mb():.0f} MB", f"{again.new} new"]
        )
    return rows


SEED_SQL = """
SET session_replication_role = replica;
INSERT INTO ledger_account (kind, currency)
SELECT kind, currency FROM unnest(%(kinds)s::text[]) kind, unnest(ARRAY['usd', 'eur']) currency
ON CONFLICT DO NOTHING;

INSERT INTO payments_payment (
    id, stripe_payment_intent_id, amount, currency, status, capture_method, amount_capturable, amount_received,
    refunded_amount, request_fingerprint, client_secret, description, metadata, order_reference, customer_email,
    customer_name, card_brand, card_last4, failure_code, failure_message, books_mismatch, stripe_release_refund_id,
    capture_idempotency_key, capture_request_fingerprint, created_at, updated_at)
SELECT gen_random_uuid(), 'pi_bench' || n, 1000 + n %% 9000, CASE WHEN n %% 4 = 0 THEN 'eur' ELSE 'usd' END,
       'succeeded', 'automatic', 0, 1000 + n %% 9000, 0, '', '', '', '{}', '', '', '', 'visa', '4242', '', '', '', '',
       '', '', %(start)s::timestamptz + n * %(step)s * interval '1 second',
       %(start)s::timestamptz + n * %(step)s * interval '1 second'
FROM generate_series(1, %(payments)s) n;

INSERT INTO ledger_balancetransaction (
    stripe_id, type, reporting_category, amount, fee, fee_details, net, currency, source_id, source_type,
    payment_intent_id, payment_id, available_on, stripe_created, recorded_at)
SELECT 'txn_bench' || p.stripe_payment_intent_id, 'charge', 'charge', p.amount,
       round(p.amount * 0.029) + 30, '[]', p.amount - round(p.amount * 0.029) - 30, p.currency,
       'ch_bench' || p.stripe_payment_intent_id, 'charge', p.stripe_payment_intent_id, p.id,
       p.created_at, p.created_at, p.created_at
FROM payments_payment p WHERE p.stripe_payment_intent_id LIKE 'pi_bench%%';

INSERT INTO ledger_balancetransaction (
    stripe_id, type, reporting_category, amount, fee, fee_details, net, currency, source_id, source_type,
    payment_intent_id, payment_id, available_on, stripe_created, recorded_at)
SELECT 'txn_benchre' || p.stripe_payment_intent_id, 'refund', 'refund', -(p.amount / 2), 0, '[]', -(p.amount / 2),
       p.currency, 're_bench' || p.stripe_payment_intent_id, 'refund', p.stripe_payment_intent_id, p.id,
       p.created_at + interval '1 hour', p.created_at + interval '1 hour', p.created_at
FROM payments_payment p
WHERE p.stripe_payment_intent_id LIKE 'pi_bench%%' AND right(p.stripe_payment_intent_id, 1) = '7';

INSERT INTO ledger_entry (balance_transaction_id, description, occurred_on, created_at)
SELECT id, reporting_category || ' ' || stripe_id, (stripe_created AT TIME ZONE 'UTC')::date, now()
FROM ledger_balancetransaction;

INSERT INTO ledger_posting (entry_id, account_id, currency, amount, occurred_on)
SELECT e.id, a.id, t.currency, x.amount, e.occurred_on
FROM ledger_entry e
JOIN ledger_balancetransaction t ON t.id = e.balance_transaction_id
CROSS JOIN LATERAL (VALUES
    ('stripe_balance', t.net),
    ('stripe_fees', t.fee),
    (CASE t.reporting_category WHEN 'charge' THEN 'sales' ELSE 'refunds' END, -t.amount)
) x(kind, amount)
JOIN ledger_account a ON a.kind = x.kind AND a.currency = t.currency
WHERE x.amount <> 0;

INSERT INTO ledger_payout (
    stripe_payout_id, amount, currency, status, automatic, arrival_date, stripe_created, stripe_reconciliation_status,
    reconciliation, reconciliation_note, reconciled_at, transaction_count, gross, refunds, disputes, fees, net,
    updated_at)
SELECT 'po_bench_' || currency || '_' || day, sum(net), currency, 'paid', true, day + interval '2 days',
       day + interval '1 day', 'completed', 'reconciled', '', now(), count(*),
       coalesce(sum(amount) FILTER (WHERE reporting_category = 'charge'), 0),
       coalesce(sum(amount) FILTER (WHERE reporting_category = 'refund'), 0), 0, sum(fee), sum(net), now()
FROM (SELECT *, date_trunc('day', stripe_created) AS day FROM ledger_balancetransaction) t
GROUP BY currency, day
HAVING sum(net) > 0;

INSERT INTO ledger_accountday (account_id, day, amount)
SELECT account_id, occurred_on, sum(amount) FROM ledger_posting GROUP BY account_id, occurred_on;
SET session_replication_role = DEFAULT;
ANALYZE;
"""


def seed_report_database(payments: int) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [REPORT_DATABASE]).fetchone()
    if exists:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{REPORT_DATABASE}") as conn:
            held = conn.execute("SELECT count(*) FROM payments_payment").fetchone()[0]
        if held >= payments:
            print(f"({REPORT_DATABASE} already holds {held:,} payments)")
            return
    fresh_database(REPORT_DATABASE)
    from ledger.models import Account

    started = time.perf_counter()
    dsn = f"postgres://postgres@127.0.0.1:5432/{REPORT_DATABASE}"
    # Client-side binding: one execute of many statements.
    with psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        year = 365 * 86400
        conn.execute(
            SEED_SQL,
            {
                "kinds": list(Account.Kind.values),
                "start": time.strftime("%Y-%m-%d", time.gmtime(time.time() - year)),
                "step": year / payments,
                "payments": payments,
            },
        )
    print(f"(seeded {payments:,} payments and their books in {time.perf_counter() - started:.0f} s)")


def bench_report(runs: int) -> list[list[object]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    from ledger.models import BalanceTransaction, Payout, Posting

    user_model = get_user_model()
    admin, _ = user_model.objects.get_or_create(username="bench-finance", defaults={"is_staff": True})
    admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    rows = []
    # The test client's host, over plain HTTP.
    overrides = override_settings(ALLOWED_HOSTS=["testserver"], SECURE_SSL_REDIRECT=False)
    overrides.enable()
    for label, url in [
        ("report, last 31 days", "/admin/ledger/payout/report/"),
        ("report, whole year", "/admin/ledger/payout/report/?since=2000-01-01"),
        ("balance transactions list", "/admin/ledger/balancetransaction/"),
        ("  filtered: refunds", "/admin/ledger/balancetransaction/?reporting_category=refund"),
        ("  searched: a PaymentIntent", "/admin/ledger/balancetransaction/?q=pi_bench777"),
        ("journal entries list", "/admin/ledger/entry/"),
        ("payouts list", "/admin/ledger/payout/"),
    ]:
        times = []
        for _ in range(runs + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        times = times[1:]  # the first warms Django's caches
        rows.append([label, f"{statistics.median(times):.0f} ms", f"{max(times):.0f} ms", len(queries)])
    counts = (
        f"{BalanceTransaction.objects.count():,} balance transactions, {Posting.objects.count():,} postings,"
        f" {Payout.objects.count():,} payouts"
    )
    print(f"({counts})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--skip-report", action="store_true")
    args = parser.parse_args()
    print(f"Machine: {machine()}. {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    if not args.skip_sync:
        fresh_database(SYNC_DATABASE)
        setup_django(SYNC_DATABASE, stripe_api_base="http://127.0.0.1:9")
        print_table(
            f"sync_ledger over {args.transactions:,} balance transactions (local Stripe, pages of 100)",
            ["sync", "time", "transactions/s", "peak memory (process)", "recorded"],
            bench_sync(args.transactions),
        )
    if not args.skip_report:
        if args.skip_sync:
            setup_django(REPORT_DATABASE, stripe_api_base="http://127.0.0.1:9")
        from django.db import connections

        # The same process: point Django at the report's database.
        connections["default"].close()
        connections["default"].settings_dict["NAME"] = REPORT_DATABASE
        seed_report_database(args.payments)
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{REPORT_DATABASE}"
        print_table(
            f"Finance report at {args.payments:,} payments (median of {args.runs})",
            ["page", "median", "worst", "SQL queries"],
            bench_report(args.runs),
        )


if __name__ == "__main__":
    main()
