"""
Issue 12's crash proof: the webhook storm (devkit.scenarios.storm: ten events per
payment, every one delivered several times, shuffled) posted to two gunicorn
servers while two background workers apply it; in the middle, each worker is
SIGKILLed once and PostgreSQL is stopped at once (as a crash: recovery at start)
and started again. Then every event must have been applied once (none pending,
none failed, no refund recorded twice) and every payment and refund be in the
state Stripe holds.

It runs on a PostgreSQL cluster of its own (it is restarted: never the machine's
shared one) and a local Stripe of its own, in a process of its own that sets
Django up on that cluster, and prints its figures (as JSON with `--json`):

    python -m devkit.enginecrash [--payments 12] [--copies 3] [--gunicorn-workers 2] [--json]

The suite runs it small (webhooks/tests/test_engine_crash.py); `python -m
benchmarks.crashes --scenario worker-storm` at full size (BENCHMARKS.md).
Development and tests only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from devkit.fakestripe import FakeStripe
from devkit.pgcluster import PrivateCluster
from devkit.processes import PROJECT_ROOT
from devkit.siteserver import SiteServer, site_environment
from devkit.workers import FAST_RECOVERY_ENV, JobWorker

DATABASE = "paymentsite_engine_crash"
# The workers here retry a failed apply six times, a second apart: a job cut by the
# database's restart is run again, not failed, while the database comes back.
WORKER_ENV = {**FAST_RECOVERY_ENV, "WEBHOOK_APPLY_RETRIES": "6", "WEBHOOK_RETRY_BASE_SECONDS": "1"}


@dataclass
class EngineCrashRun:
    """What happened, and what the books hold afterwards (`check`: devkit.scenarios.StormCheck's fields)."""

    payments: int = 0
    events: int = 0
    posts: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    workers_killed: int = 0
    worker_restarts: int = 0
    database_restarts: int = 0
    database_down_seconds: float = 0.0
    # Cluster, schema, local Stripe, payments, servers and workers, before the first post.
    setup_seconds: float = 0.0
    delivery_seconds: float = 0.0
    # From the end of the deliveries until no event was pending.
    drain_seconds: float = 0.0
    jobs_recovered: int = 0
    check: dict = field(default_factory=dict)
    consistent: bool = False


def run(*, payments: int = 12, copies: int = 3, concurrency: int = 8, gunicorn_workers: int = 2) -> EngineCrashRun:
    """Set up the private cluster, the local Stripe, two servers and two workers, run the storm through the crashes."""
    result = EngineCrashRun()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(PrivateCluster.start())
        database_url = cluster.url(DATABASE)
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
        fake_stripe = stack.enter_context(FakeStripe.start())
        environment = site_environment(
            database_name=DATABASE, stripe_api_base=fake_stripe.api_base, database_url=database_url
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=PROJECT_ROOT,
            env=environment,
            check=True,
            capture_output=True,
        )
        os.environ.update(environment)
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import close_old_connections

        from devkit.scenarios import deliver, storm_check, storm_prepare, wait_for_workers

        customer, _ = User.objects.get_or_create(username="engine-crash-customer")
        bodies, plan = storm_prepare(payments=payments, user=customer)
        common = {"database_name": DATABASE, "stripe_api_base": fake_stripe.api_base, "database_url": database_url}
        workers = [
            stack.enter_context(JobWorker.start(supervise=True, extra_env=WORKER_ENV, wait=False, **common))
            for _ in range(2)
        ]
        # Both servers start at once (each waits for its /healthz), while the workers start too.
        with ThreadPoolExecutor(max_workers=2) as pool:
            starting = [pool.submit(SiteServer.start, workers=gunicorn_workers, **common) for _ in range(2)]
            sites = [stack.enter_context(future.result()) for future in starting]
        for worker in workers:
            worker.wait_until_ready()

        def crash() -> None:
            # Spread over the deliveries and the workers' backlog: a kill, the database, a kill.
            time.sleep(0.5)
            workers[0].kill()
            result.workers_killed += 1
            time.sleep(0.7)
            result.database_down_seconds = cluster.restart()
            result.database_restarts += 1
            time.sleep(0.7)
            # A worker that lost the database exits by itself and its supervisor starts it
            # again: kill the running one, waiting for it to be back if it is between lives.
            deadline = time.monotonic() + 15
            while True:
                try:
                    workers[1].kill()
                    break
                except ProcessLookupError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            result.workers_killed += 1

        result.setup_seconds = time.perf_counter() - started
        crash_thread = threading.Thread(target=crash, daemon=True)
        crash_thread.start()
        delivery = deliver([site.url for site in sites], bodies, copies=copies, concurrency=concurrency, seed=7)
        crash_thread.join()
        result.drain_seconds = wait_for_workers(bodies, timeout=120)
        close_old_connections()
        check = storm_check(bodies, plan)
        result.worker_restarts = sum(worker.restarts for worker in workers)
        result.jobs_recovered = sum(worker.log_text().count("of a dead worker is queued again") for worker in workers)

    result.payments = check.payments
    result.events = delivery.events
    result.posts = delivery.posts
    result.answers = {str(answer): count for answer, count in Counter(delivery.answers).items()}
    result.undelivered = delivery.undelivered
    result.delivery_seconds = delivery.seconds
    result.check = dataclasses.asdict(check)
    result.consistent = check.consistent and not delivery.undelivered
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--payments", type=int, default=12, help="payments, ten events each (default 12)")
    parser.add_argument("--copies", type=int, default=3, help="deliveries of every event (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--gunicorn-workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    result = run(
        payments=args.payments,
        copies=args.copies,
        concurrency=args.concurrency,
        gunicorn_workers=args.gunicorn_workers,
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        for name, value in dataclasses.asdict(result).items():
            print(f"{name}: {value}")
    if not result.consistent:
        raise SystemExit("INCONSISTENT")


if __name__ == "__main__":
    main()
