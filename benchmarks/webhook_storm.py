"""
Item 1 of issue #7 (and 4 with --servers 2): a storm of signed Stripe events,
ten per payment (PaymentIntent steps, two refunds, charge events), every one
delivered `--copies` times in a shuffled order from `--concurrency` threads to
real gunicorn servers on one database; events that got no 2xx are delivered
again, as Stripe does. Then every payment and refund is compared with the
state Stripe holds, and the refund invariants are checked on every payment.

    python -m benchmarks.webhook_storm [--payments 1000] [--copies 3] [--servers 2] [--workers 2]
"""

from __future__ import annotations

import argparse

from benchmarks.harness import fresh_database, machine, print_table, scenario_users, setup_django, site_servers

DATABASE = "paymentsite_bench_storm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--payments", type=int, default=1000, help="payments; ten events each (default 1000)")
    parser.add_argument("--copies", type=int, default=3, help="deliveries of every event (default 3)")
    parser.add_argument("--servers", type=int, default=2, help="server processes on one database (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    args = parser.parse_args()

    fresh_database(DATABASE)
    setup_django(DATABASE, stripe_api_base="http://127.0.0.1:9")
    from devkit.scenarios import deliver, server_exceptions, storm_check, storm_prepare, summary

    customer, _ = scenario_users(DATABASE)
    bodies, plan = storm_prepare(payments=args.payments, user=customer)
    # Nothing listens on port 9: a webhook handler that called Stripe would fail its event.
    with site_servers(
        args.servers, workers=args.workers, database_name=DATABASE, stripe_api_base="http://127.0.0.1:9"
    ) as sites:
        delivery = deliver([site.url for site in sites], bodies, copies=args.copies, concurrency=args.concurrency)
        exceptions = server_exceptions(sites)
    check = storm_check(bodies, plan)

    print_table(
        f"Webhook storm: {args.servers} server(s) x {args.workers} workers, {args.concurrency} client threads, "
        f"on {machine()}",
        ["figure", "value"],
        [
            ["payments (half made by the app, half adopted from events)", check.payments],
            ["distinct events", delivery.events],
            ["posts (every event x copies, shuffled; then redeliveries)", delivery.posts],
            ["answers", summary(delivery.answers)],
            # A refund's event before any event of its (adopted) payment: 500, so Stripe delivers it again.
            ["exceptions behind the 500s", summary(exceptions) or "none"],
            ["redelivery rounds / events redelivered", f"{delivery.redelivery_rounds} / {delivery.redelivered}"],
            ["events never accepted", delivery.undelivered],
            ["duration s / posts per s", f"{delivery.seconds:.1f} / {delivery.posts / delivery.seconds:.0f}"],
            ["events stored / still failed", f"{check.events_stored} / {check.events_failed}"],
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
