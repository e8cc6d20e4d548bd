"""
Item 1 of issue #7 (and 4 with --servers 2): a storm of signed Stripe events,
ten per payment (PaymentIntent steps, two refunds, charge events), every one
delivered `--copies` times in a shuffled order from `--concurrency` threads to
real gunicorn servers on one database; events that got no 2xx are delivered
again, as Stripe does. Background workers (`--job-workers`) apply them; half the
payments are first heard of through their events, paid at the benchmark's local
Stripe, where a worker reads them to adopt them. Then every payment and refund
is compared with the state Stripe holds, and the refund invariants are checked
on every payment.

    python -m benchmarks.webhook_storm [--payments 1000] [--copies 3] [--servers 2] [--workers 2] [--job-workers 2]
"""

from __future__ import annotations

import argparse
import contextlib

from benchmarks.harness import fresh_database, machine, print_table, scenario_users, setup_django, site_servers
from devkit.fakestripe import FakeStripe
from devkit.workers import JobWorker

DATABASE = "paymentsite_bench_storm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--payments", type=int, default=1000, help="payments; ten events each (default 1000)")
    parser.add_argument("--copies", type=int, default=3, help="deliveries of every event (default 3)")
    parser.add_argument("--servers", type=int, default=2, help="server processes on one database (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--job-workers", type=int, default=2, help="background worker processes (default 2)")
    args = parser.parse_args()

    fresh_database(DATABASE)
    with contextlib.ExitStack() as stack:
        fake_stripe = stack.enter_context(FakeStripe.start())
        setup_django(DATABASE, stripe_api_base=fake_stripe.api_base)
        from devkit.scenarios import deliver, server_exceptions, storm_check, storm_prepare, summary, wait_for_workers

        customer, _ = scenario_users(DATABASE)
        bodies, plan = storm_prepare(payments=args.payments, user=customer)
        sites = stack.enter_context(
            site_servers(
                args.servers, workers=args.workers, database_name=DATABASE, stripe_api_base=fake_stripe.api_base
            )
        )
        for _ in range(args.job_workers):
            stack.enter_context(JobWorker.start(database_name=DATABASE, stripe_api_base=fake_stripe.api_base))
        delivery = deliver([site.url for site in sites], bodies, copies=args.copies, concurrency=args.concurrency)
        drain = wait_for_workers(bodies, timeout=1800)
        exceptions = server_exceptions(sites)
        check = storm_check(bodies, plan)

    print_table(
        f"Webhook storm: {args.servers} server(s) x {args.workers} workers, {args.job_workers} background "
        f"workers, {args.concurrency} client threads, on {machine()}",
        ["figure", "value"],
        [
            ["payments (half made by the app, half adopted from Stripe)", check.payments],
            ["distinct events", delivery.events],
            ["posts (every event x copies, shuffled; then redeliveries)", delivery.posts],
            ["answers", summary(delivery.answers)],
            ["exceptions in the servers' logs", summary(exceptions) or "none"],
            ["redelivery rounds / events redelivered", f"{delivery.redelivery_rounds} / {delivery.redelivered}"],
            ["events never accepted", delivery.undelivered],
            ["duration s / posts per s", f"{delivery.seconds:.1f} / {delivery.posts / delivery.seconds:.0f}"],
            ["after the last post, until the workers had applied every event, s", f"{drain:.1f}"],
            [
                "events stored / pending / failed",
                f"{check.events_stored} / {check.events_pending} / {check.events_failed}",
            ],
            ["events whose apply job ran more than once", check.events_retried],
            ["refunds expected / recorded", f"{check.refunds_expected} / {check.refunds_recorded}"],
            ["payments not in their final state", len(check.payments_wrong)],
            ["refunds not in their final state", len(check.refunds_wrong)],
            ["payments breaking an invariant", len(check.invariant_violations)],
        ],
    )
    problems = check.payments_wrong + check.refunds_wrong + check.invariant_violations
    for problem in problems[:20]:
        print(problem)
    if not check.consistent or delivery.undelivered:
        raise SystemExit("INCONSISTENT: see above")


if __name__ == "__main__":
    main()
