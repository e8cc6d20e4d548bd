"""
The performance figures of BENCHMARKS.md in one run on one machine, each beside
its baseline:

- webhook acknowledgement against the bare one-INSERT view on the same server,
  and the background workers' apply throughput and lag (benchmarks.engine);
- POST /api/payments/ against its floor view (token, INSERT, the same SDK create,
  UPDATE) and a direct SDK create (benchmarks.payment_create);
- the same signed webhook events to paymentsite and to dj-stripe
  (benchmarks.peer_webhooks);
- one and two gunicorn servers, one and four job workers on one PostgreSQL, and
  where the time goes (benchmarks.scale_out);
- notifications with and without the outbox (benchmarks.notifications);
- the admin's busiest pages against a stock ModelAdmin (benchmarks.admin_pages);
- the desk's search box, each kind of search and the date range, against a stock
  ModelAdmin searching the same columns (benchmarks.admin_search);
- the books: sync_ledger over 100,000 balance transactions and the finance report
  at a million payments (benchmarks.ledger).

    .venv/bin/python -m benchmarks.figures [--quick] [--only NAME ...]

Each benchmark runs in its own process (each sets Django up on a database of its
own) and prints its table under the machine, the exact command and the time it
started; `--quick` uses small sizes to check that it all runs.

BENCHMARKS entries: (name, title, module, arguments, quick arguments, extra
environment). To add a benchmark, add a line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from benchmarks.harness import machine
from devkit.processes import PROJECT_ROOT

ADMIN_DATABASE = "paymentsite_admin_bench"
ADMIN_ENV = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{ADMIN_DATABASE}"}

BENCHMARKS = [
    ("engine", "Webhooks: acknowledgement against the bare INSERT; apply with 1, 2, 4 workers", "benchmarks.engine",
     ["--events", "3000"], ["--events", "300", "--backlog", "200", "--lag-events", "100"], {}),
    ("payment_create", "Payment creation against its floor", "benchmarks.payment_create",
     ["--requests", "1200", "--rounds", "12"], ["--quick"], {}),
    ("peer", "Webhooks beside dj-stripe", "benchmarks.peer_webhooks", ["--payments", "300"], ["--quick"], {}),
    ("scale_out", "Scale-out: two servers, four workers, one PostgreSQL", "benchmarks.scale_out",
     [], ["--quick"], {}),
    ("scale_out_pgbouncer", "Scale-out through PgBouncer", "benchmarks.scale_out", ["--pgbouncer"],
     ["--quick", "--pgbouncer"], {}),
    ("notifications", "Notifications: with and without the outbox", "benchmarks.notifications",
     [], ["--events", "100", "--lag-events", "40", "--cost-events", "60", "--workers", "1"], {}),
    ("admin_pages", "Admin pages against a stock ModelAdmin", "benchmarks.admin_pages",
     ["--payments", "1000000", "--runs", "5"], ["--payments", "20000", "--runs", "5"], ADMIN_ENV),
    ("admin_search", "Admin search and date range against a stock ModelAdmin", "benchmarks.admin_search",
     ["--payments", "1000000", "--runs", "5"], ["--payments", "20000", "--runs", "5"], ADMIN_ENV),
    ("ledger", "The books: sync_ledger and the finance report", "benchmarks.ledger",
     ["--runs", "5"], ["--transactions", "3000", "--payments", "20000", "--runs", "3"], {}),
]  # fmt: skip


def ensure_database(name: str) -> None:
    """The admin benchmark keeps its (slow to seed) database between runs; create it the first time."""
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that everything runs")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these (names: see BENCHMARKS)")
    args = parser.parse_args()
    ensure_database(ADMIN_DATABASE)
    print(f"# paymentsite performance figures\n\nMachine: {machine()}. Started {time.strftime('%Y-%m-%d %H:%M UTC')}.")
    failed = []
    for name, title, module, full, quick, env in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        command = [sys.executable, "-m", module, *(quick if args.quick else full)]
        shown = " ".join([".venv/bin/python", "-m", module, *map(shlex.quote, quick if args.quick else full)])
        print(f"\n## {title}\n\nMachine: {machine()}. Command: `{shown}`. {time.strftime('%Y-%m-%d %H:%M UTC')}.")
        started = time.monotonic()
        result = subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, **env})
        if result.returncode:
            failed.append(name)
        print(f"\n({title}: {time.monotonic() - started:.0f} s{', FAILED' if result.returncode else ''})", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
