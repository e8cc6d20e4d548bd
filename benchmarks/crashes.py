"""
Item 3 of issue #7: crashes in the middle of the work, then the documented
recovery (BENCHMARKS.md, "Crashes").

- `--scenario worker-kill`: refunds through two servers while a worker of the
  first is SIGKILLed every `--every` seconds; Stripe's refund calls are made
  slow (half take a second) so workers die between asking Stripe and recording
  its answer. Recovery: once the dead requests' leases have run out,
  `retry_refunds` and `reconcile_stripe`; the clients that got no answer send
  their request again with the same Idempotency-Key; the commands once more.
- `--scenario pg-restart`: a webhook storm against two servers and two
  background workers on a private PostgreSQL cluster (never the machine's
  shared one) that is stopped at once (`pg_ctl -m immediate`, as a crash:
  recovery at start) and started again in the middle of it. Recovery: Stripe's
  redelivery of every event that got no 2xx; the workers (started again by their
  supervisor) apply the rest; then `process_webhooks --failed`.
- `--scenario worker-storm`: the same storm, each background worker SIGKILLed
  once and the cluster restarted in the middle (devkit/enginecrash.py, which the
  suite runs small). Recovery: none by hand: the supervisor starts the workers
  again, and the stalled-job recovery queues again the jobs they were running.
- `--scenario pg-restart-refunds`: the refunds of worker-kill on the private
  cluster, restarted `--restart-after` seconds into them. Recovery: as after a
  worker kill (clients resend what got a 5xx too).

    python -m benchmarks.crashes --scenario worker-kill [--refunds 400] [--kills 10] [--every 2]
    python -m benchmarks.crashes --scenario pg-restart [--payments 300] [--restart-after 10]
    python -m benchmarks.crashes --scenario pg-restart-refunds [--refunds 400] [--restart-after 10]
    python -m benchmarks.crashes --scenario worker-storm [--payments 300]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

from benchmarks.harness import (
    PrivateCluster,
    fresh_database,
    machine,
    print_table,
    scenario_users,
    setup_django,
    site_servers,
)
from devkit.fakestripe import FakeStripe
from devkit.workers import FAST_RECOVERY_ENV, JobWorker

DATABASE = "paymentsite_bench_crashes"
# The refund lease of the servers here: long enough for a slow Stripe call, short enough to wait out.
LEASE_SECONDS = 10
# The background workers here notice a dead worker in seconds, and retry a failed apply six times a second
# apart: an apply the restart cut is run again once the database is back, not failed.
CRASH_WORKER_ENV = {**FAST_RECOVERY_ENV, "WEBHOOK_APPLY_RETRIES": "6", "WEBHOOK_RETRY_BASE_SECONDS": "1"}


def refund_crash(args) -> None:
    """worker-kill, or pg-restart-refunds: on a private cluster, restarted `--restart-after` s into the refunds."""
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(PrivateCluster.start()) if args.scenario == "pg-restart-refunds" else None
        database_url = cluster.url(DATABASE) if cluster else None
        fresh_database(DATABASE, cluster=cluster)
        fake_stripe = stack.enter_context(FakeStripe.start())
        setup_django(DATABASE, stripe_api_base=fake_stripe.api_base, database_url=database_url)
        from devkit.scenarios import (
            paid_payments,
            refund_check,
            refund_requests,
            refunds_through_crash,
            server_exceptions,
            summary,
            worker_kills,
        )

        customer, token = scenario_users(DATABASE, database_url=database_url)
        wanted = refund_requests(paid_payments(count=args.refunds // 2, user=customer), per_payment=2)
        sites = stack.enter_context(
            site_servers(
                2,
                workers=args.workers,
                database_name=DATABASE,
                stripe_api_base=fake_stripe.api_base,
                database_url=database_url,
                extra_env={"REFUND_CREATE_LEASE_SECONDS": str(LEASE_SECONDS)},
            )
        )
        killed: list[int] = []
        downtime: list[float] = []
        if cluster:

            def crash() -> None:
                time.sleep(args.restart_after)
                downtime.append(cluster.restart())

            what = f"PostgreSQL restarted {args.restart_after} s into refunds"
        else:
            crash = worker_kills(sites[0], kills=args.kills, every=args.every, killed=killed)
            what = "Workers SIGKILLed in the middle of refunds"
        run = refunds_through_crash(
            [site.url for site in sites],
            token,
            wanted,
            crash=crash,
            fake_stripe=fake_stripe,
            lease_seconds=LEASE_SECONDS,
            concurrency=args.concurrency,
        )
        exceptions = server_exceptions(sites)
        check = refund_check(wanted, fake_stripe=fake_stripe)

    crash_figure = (
        ["restart (immediate stop, start) took, s", f"{downtime[0]:.1f}"]
        if cluster
        else ["workers SIGKILLed (first server)", len(killed)]
    )
    print_table(
        f"{what}: 2 servers x {args.workers} workers, {args.concurrency} client threads, on {machine()}",
        ["figure", "value"],
        [
            ["refunds asked for (two per payment, shuffled)", check.requested],
            crash_figure,
            ["requests took, s", f"{run.seconds:.0f}"],
            ["answers to the refund requests", summary(run.answers)],
            ["exceptions in the servers' logs", summary(exceptions) or "none"],
            ["left pending without Stripe's answer after the requests", run.pending_after_requests],
            ["requests resent with their key (no answer, or 5xx)", summary(run.resent_answers) or 0],
            *[[f"commands, round {n + 1}", line] for n, line in enumerate(run.command_rounds)],
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


def pg_restart(args) -> None:
    with PrivateCluster.start() as cluster, FakeStripe.start() as fake_stripe:
        database_url = cluster.url(DATABASE)
        fresh_database(DATABASE, cluster=cluster)
        setup_django(DATABASE, stripe_api_base=fake_stripe.api_base, database_url=database_url)
        from django.core.management import call_command
        from django.db import close_old_connections

        from devkit.scenarios import deliver, server_exceptions, storm_check, storm_prepare, summary, wait_for_workers

        customer, _ = scenario_users(DATABASE, database_url=database_url)
        bodies, plan = storm_prepare(payments=args.payments, user=customer)
        downtime: list[float] = []

        def restart() -> None:
            time.sleep(args.restart_after)
            downtime.append(cluster.restart())

        common = {"database_name": DATABASE, "stripe_api_base": fake_stripe.api_base, "database_url": database_url}
        with (
            site_servers(2, workers=args.workers, **common) as sites,
            JobWorker.start(supervise=True, extra_env=CRASH_WORKER_ENV, **common),
            JobWorker.start(supervise=True, extra_env=CRASH_WORKER_ENV, **common),
        ):
            delivery = deliver(
                [site.url for site in sites], bodies, copies=3, concurrency=args.concurrency, during=restart
            )
            close_old_connections()
            wait_for_workers(bodies, timeout=600)
            exceptions = server_exceptions(sites)
        close_old_connections()
        reprocessed = io.StringIO()
        call_command("process_webhooks", "--failed", stdout=reprocessed, stderr=io.StringIO())
        check = storm_check(bodies, plan)

    print_table(
        f"PostgreSQL restarted in the middle of a webhook storm: 2 servers x {args.workers} workers, "
        f"{args.concurrency} client threads, on {machine()}",
        ["figure", "value"],
        [
            ["payments / distinct events", f"{check.payments} / {delivery.events}"],
            ["restart (immediate stop, start) after / took, s", f"{args.restart_after} / {downtime[0]:.1f}"],
            ["posts (every event x 3, shuffled; then redeliveries)", delivery.posts],
            ["answers", summary(delivery.answers)],
            ["exceptions in the servers' logs", summary(exceptions) or "none"],
            ["redelivery rounds / events redelivered", f"{delivery.redelivery_rounds} / {delivery.redelivered}"],
            ["events never accepted", delivery.undelivered],
            ["process_webhooks --failed", reprocessed.getvalue().strip()],
            [
                "events stored / pending / failed",
                f"{check.events_stored} / {check.events_pending} / {check.events_failed}",
            ],
            ["refunds expected / recorded", f"{check.refunds_expected} / {check.refunds_recorded}"],
            ["payments not in their final state", len(check.payments_wrong)],
            ["refunds not in their final state", len(check.refunds_wrong)],
            ["payments breaking an invariant", len(check.invariant_violations)],
        ],
    )
    for problem in (check.payments_wrong + check.refunds_wrong + check.invariant_violations)[:20]:
        print(problem)
    if not check.consistent or delivery.undelivered:
        raise SystemExit("INCONSISTENT: see above")


def worker_storm(args) -> None:
    """The storm through two servers and two workers, each worker SIGKILLed once and the database restarted."""
    from devkit.enginecrash import run

    result = run(payments=args.payments, copies=3, concurrency=args.concurrency, gunicorn_workers=args.workers)
    check = result.check
    print_table(
        f"Workers SIGKILLed and PostgreSQL restarted in the middle of a webhook storm: 2 servers x {args.workers} "
        f"workers, 2 background workers, {args.concurrency} client threads, on {machine()}",
        ["figure", "value"],
        [
            ["payments / distinct events", f"{result.payments} / {result.events}"],
            ["background workers SIGKILLed / started again by their supervisor", f"{result.workers_killed} / "
             f"{result.worker_restarts}"],
            ["database restarts / down for, s", f"{result.database_restarts} / {result.database_down_seconds:.1f}"],
            ["posts (every event x 3, shuffled; then redeliveries)", result.posts],
            ["answers", ", ".join(f"{code}: {count}" for code, count in sorted(result.answers.items()))],
            ["events never accepted", result.undelivered],
            ["deliveries took / then until every event was applied, s",
             f"{result.delivery_seconds:.1f} / {result.drain_seconds:.1f}"],
            ["jobs of dead workers queued again (stalled-job recovery)", result.jobs_recovered],
            ["events stored / pending / failed",
             f"{check['events_stored']} / {check['events_pending']} / {check['events_failed']}"],
            ["events whose apply job ran more than once", check["events_retried"]],
            ["refunds expected / recorded", f"{check['refunds_expected']} / {check['refunds_recorded']}"],
            ["payments not in their final state", len(check["payments_wrong"])],
            ["refunds not in their final state", len(check["refunds_wrong"])],
            ["payments breaking an invariant", len(check["invariant_violations"])],
        ],
    )  # fmt: skip
    for problem in (check["payments_wrong"] + check["refunds_wrong"] + check["invariant_violations"])[:20]:
        print(problem)
    if not result.consistent:
        raise SystemExit("INCONSISTENT: see above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--scenario", choices=("worker-kill", "pg-restart", "pg-restart-refunds", "worker-storm"), required=True
    )
    parser.add_argument(
        "--refunds", type=int, default=400, help="worker-kill, pg-restart-refunds: refunds (default 400)"
    )
    parser.add_argument("--kills", type=int, default=10, help="worker-kill: workers SIGKILLed (default 10)")
    parser.add_argument("--every", type=float, default=2.0, help="worker-kill: seconds between kills (default 2)")
    parser.add_argument(
        "--payments", type=int, default=300, help="pg-restart, worker-storm: payments, ten events each (default 300)"
    )
    parser.add_argument(
        "--restart-after", type=float, default=10, help="pg-restart: seconds into the storm (default 10)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    args = parser.parse_args()
    {"pg-restart": pg_restart, "worker-storm": worker_storm}.get(args.scenario, refund_crash)(args)


if __name__ == "__main__":
    main()
