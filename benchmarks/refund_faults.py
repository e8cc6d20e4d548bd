"""
Item 2 of issue #7 (and 4 with --servers 2): refunds through real servers while
the local Stripe fails `--rate` of all calls, in three equal parts: a 500 with
nothing done, a hang past the client's 3 s timeout (done late), the answer
dropped after the work is done. Then, as the operator does, `retry_refunds`
and `reconcile_stripe` once with the faults still on and again once Stripe has
recovered; then every refund asked for is looked for here and at Stripe.

    python -m benchmarks.refund_faults [--refunds 1000] [--rate 0.3] [--servers 2] [--workers 3]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.harness import fresh_database, machine, print_table, scenario_users, setup_django, site_servers
from devkit.fakestripe import FakeStripe

DATABASE = "paymentsite_bench_refund_faults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--refunds", type=int, default=1000, help="refunds, two per payment (default 1000)")
    parser.add_argument("--rate", type=float, default=0.3, help="share of Stripe calls that fail (default 0.3)")
    parser.add_argument("--servers", type=int, default=2, help="server processes on one database (default 2)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers per server (default 3)")
    parser.add_argument("--concurrency", type=int, default=12, help="client threads (default 12)")
    args = parser.parse_args()

    fresh_database(DATABASE)
    with FakeStripe.start() as fake_stripe:
        setup_django(DATABASE, stripe_api_base=fake_stripe.api_base)
        from devkit.scenarios import (
            paid_payments,
            refund_check,
            refund_requests,
            refunds_through_faults,
            server_exceptions,
            summary,
        )

        customer, token = scenario_users(DATABASE)
        started = time.perf_counter()
        payments = paid_payments(count=args.refunds // 2, user=customer)
        paying = time.perf_counter() - started
        wanted = refund_requests(payments, per_payment=2)
        with site_servers(
            args.servers, workers=args.workers, database_name=DATABASE, stripe_api_base=fake_stripe.api_base
        ) as sites:
            started = time.perf_counter()
            run = refunds_through_faults(
                [site.url for site in sites],
                token,
                wanted,
                fake_stripe=fake_stripe,
                rate=args.rate,
                hang_seconds=3.5,
                concurrency=args.concurrency,
            )
            recovering = time.perf_counter() - started
            exceptions = server_exceptions(sites)
        check = refund_check(wanted, fake_stripe=fake_stripe)

    print_table(
        f"Refunds through Stripe faults: {args.servers} server(s) x {args.workers} workers, "
        f"{args.concurrency} client threads, on {machine()}",
        ["figure", "value"],
        [
            [
                "paid payments (made through the service, paid at the local Stripe)",
                f"{len(payments)} in {paying:.0f} s",
            ],
            ["refunds asked for (two per payment, shuffled)", check.requested],
            [f"faults fired ({args.rate:.0%} of calls while on)", summary(run.faults_fired)],
            ["answers to the refund requests", summary(run.answers)],
            ["exceptions in the servers' logs", summary(exceptions) or "none"],
            ["left pending without Stripe's answer after the requests", run.pending_after_requests],
            *[[f"commands ({n + 1})", line] for n, line in enumerate(run.command_rounds)],
            ["requests and recovery, s", f"{run.seconds:.0f} + {recovering - run.seconds:.0f}"],
            [
                "refunds recorded here / succeeded / made at Stripe",
                f"{check.recorded} / {check.succeeded} / {check.at_stripe}",
            ],
            ["refunds made twice at Stripe", check.doubled],
            ["refunds lost (not succeeded here or not at Stripe)", check.lost],
            ["refunds at Stripe not recorded here", check.unrecorded],
            ["payments breaking an invariant", len(check.invariant_violations)],
        ],
    )
    for problem in check.invariant_violations[:20]:
        print(problem)
    if not check.consistent:
        raise SystemExit("INCONSISTENT: see above")


if __name__ == "__main__":
    main()
