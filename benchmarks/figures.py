"""
The performance figures of BENCHMARKS.md in one run on one machine, each beside
its baseline: webhook acknowledgement against a bare one-INSERT view on the same
server (and the background workers' apply throughput and lag with 1, 2 and 4
workers), POST /api/payments/ against a direct SDK create to the same local
Stripe, and the admin's busiest pages at a million payments against a stock
ModelAdmin.

    .venv/bin/python -m benchmarks.figures [--quick]

Each benchmark runs in its own process (each sets Django up on a database of its
own) and prints its table; `--quick` uses small sizes to check that it all runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.harness import machine
from devkit.processes import PROJECT_ROOT

ADMIN_DATABASE = "paymentsite_admin_bench"


def runs(quick: bool) -> list[tuple[str, list[str], dict[str, str]]]:
    """(title, module and arguments, extra environment) of each benchmark."""
    admin_env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{ADMIN_DATABASE}"}
    return [
        (
            "Webhooks: acknowledgement and apply (background engine)",
            ["benchmarks.engine"]
            + (["--events", "300", "--backlog", "200", "--lag-events", "100"] if quick else ["--events", "3000"]),
            {},
        ),
        ("Payment creation", ["benchmarks.payment_create", "--requests", "50" if quick else "500"], {}),
        (
            "The books: sync_ledger and the finance report",
            ["benchmarks.ledger"]
            + (["--transactions", "3000", "--payments", "20000", "--runs", "3"] if quick else ["--runs", "5"]),
            {},
        ),
        (
            "Admin pages",
            ["benchmarks.admin_pages", "--payments", "20000" if quick else "1000000", "--runs", "5"],
            admin_env,
        ),
        (
            "Admin search and date range",
            ["benchmarks.admin_search", "--payments", "20000" if quick else "1000000", "--runs", "5"],
            admin_env,
        ),
    ]


def ensure_database(name: str) -> None:
    """The admin benchmark keeps its (slow to seed) database between runs; create it the first time."""
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that everything runs")
    args = parser.parse_args()
    ensure_database(ADMIN_DATABASE)
    print(f"# paymentsite performance figures\n\nMachine: {machine()}. Started {time.strftime('%Y-%m-%d %H:%M UTC')}.")
    for title, command, env in runs(args.quick):
        print(f"\n## {title}\n", flush=True)
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", *command],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            check=True,
        )
        print(f"\n({title}: {time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
