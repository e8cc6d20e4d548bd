"""
POST /api/payments/ against its floor, in the same run on the same server: the
floor view (benchmarks/urls.py) does only what the design needs (the token
looked up, the row inserted and committed, the same SDK create, one UPDATE
committed) with no middleware, serializer or ORM; a direct SDK create of a
PaymentIntent to the same local Stripe shows Stripe's own share.

One gunicorn worker (1 thread), sequential requests, the three variants
interleaved in rounds on the same worker (an idle worker answers slower, so each
variant gets the same warm worker and the same machine load). Goal: ours at most
1.3x the floor's median and 1.5x its p99.

    python -m benchmarks.payment_create [--requests N] [--rounds R] [--conn-max-age S] [--before REF ...] [--quick]

`--before REF [REF ...]` adds a variant per git commit: POST /api/payments/ served
by the code of that commit (a one-worker server each, on the same database,
interleaved the same way): what each change bought, before and after in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import uuid

import requests
import stripe

from benchmarks.harness import (
    api_token,
    code_at,
    cpu_seconds,
    fresh_database,
    machine,
    percentile,
    print_table,
    site_server_at,
)
from devkit.fakestripe import FakeStripe
from devkit.siteserver import TEST_STRIPE_KEY, SiteServer

DATABASE = "perf_bench_create"
BODY = {"amount": 2000, "currency": "usd", "description": "benchmark"}
OURS = "POST /api/payments/"
FLOOR = "floor view: token, INSERT, SDK create, UPDATE"
SDK = "direct SDK create (local Stripe)"


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(count: int, rounds: int, conn_max_age: int | None = None, before: tuple[str, ...] = ()) -> dict:
    """
    Milliseconds of each request of each variant: `count` of each, in `rounds`
    interleaved rounds; for each git commit in `before`, also ours as of that commit.
    """
    fresh_database(DATABASE)
    token = api_token(DATABASE)
    extra_env = {} if conn_max_age is None else {"CONN_MAX_AGE": str(conn_max_age)}
    with contextlib.ExitStack() as stack:
        fake_stripe = stack.enter_context(FakeStripe.start())
        options = {
            "database_name": DATABASE,
            "stripe_api_base": fake_stripe.api_base,
            "workers": 1,
            "extra_env": extra_env,
        }
        site = stack.enter_context(SiteServer.start(settings_module="benchmarks.settings", **options))
        old_sites = {
            ref: stack.enter_context(site_server_at(stack.enter_context(code_at(ref)), **options)) for ref in before
        }
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"

        def post(path: str, server: SiteServer = site):
            def call() -> None:
                response = session.post(
                    server.url + path, json=BODY, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30
                )
                assert response.status_code == 201, response.text

            return call

        client = stripe.StripeClient(
            TEST_STRIPE_KEY,
            base_addresses={"api": fake_stripe.api_base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=30),
        )

        def straight_to_stripe() -> None:
            client.v1.payment_intents.create(
                params={"amount": 2000, "currency": "usd", "metadata": {"payment_id": str(uuid.uuid4())}},
                options={"idempotency_key": str(uuid.uuid4())},
            )

        calls = {SDK: straight_to_stripe, FLOOR: post("/bench/floor/payments/"), OURS: post("/api/payments/")}
        # The gunicorn worker each variant runs on, whose CPU time is what the variant costs the server.
        worker_of = {SDK: None, FLOOR: site.worker_pids()[0], OURS: site.worker_pids()[0]}
        for ref, old_site in old_sites.items():
            calls[f"{OURS} at {ref}"] = post("/api/payments/", old_site)
            worker_of[f"{OURS} at {ref}"] = old_site.worker_pids()[0]
        for call in calls.values():
            for _ in range(5):
                call()
        durations: dict[str, list[float]] = {name: [] for name in calls}
        cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
        per_round = max(1, count // rounds)
        for _ in range(rounds):
            # localstripe keeps every object in memory: emptied between rounds so no variant pays for a bigger store.
            fake_stripe.flush()
            for name, call in calls.items():
                pid = worker_of[name]
                before_cpu = cpu_seconds(pid) if pid else 0.0
                durations[name] += [timed(call) for _ in range(per_round)]
                cpu[name] += (cpu_seconds(pid) - before_cpu) if pid else 0.0
    return durations, {name: 1000 * seconds / len(durations[name]) for name, seconds in cpu.items()}


def rows(durations: dict[str, list[float]], cpu: dict[str, float]) -> list[list[object]]:
    """Table rows: each variant's median, p99, rate and server CPU, then ours as a ratio of the floor."""
    table = [
        [
            name,
            len(d),
            f"{statistics.median(d):.2f}",
            f"{percentile(d, 0.99):.2f}",
            f"{1000 / statistics.mean(d):.0f}",
            f"{cpu[name]:.2f}" if cpu[name] else "-",
        ]
        for name, d in durations.items()
    ]
    ours, floor = durations[OURS], durations[FLOOR]
    table.append(
        [
            "ratio, ours / floor (goal: 1.3x median, 1.5x p99)",
            "",
            f"{statistics.median(ours) / statistics.median(floor):.2f}x",
            f"{percentile(ours, 0.99) / percentile(floor, 0.99):.2f}x",
            "",
            f"{cpu[OURS] / cpu[FLOOR]:.2f}x",
        ]
    )
    return table


# CPU: the gunicorn worker's user + system time per request (clock ticks of /proc, 10 ms each, summed
# over each block of requests), which the machine's other load disturbs far less than durations.
HEADERS = ["path", "requests", "median ms", "p99 ms", "per second", "server CPU ms per request"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=1200, help="requests of each variant (1200)")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (12)")
    parser.add_argument("--conn-max-age", type=int, default=None, help="override the server's CONN_MAX_AGE")
    parser.add_argument(
        "--before", metavar="REF", nargs="+", default=(), help="also ours as of each git commit REF (a server each)"
    )
    parser.add_argument("--quick", action="store_true", help="60 requests of each in 3 rounds: check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 60, 3
    durations, cpu = measure(args.requests, args.rounds, args.conn_max_age, tuple(args.before))
    print_table(
        f"Payment creation, sequential, one gunicorn worker, {args.rounds} interleaved rounds, on {machine()}",
        HEADERS,
        rows(durations, cpu),
    )


if __name__ == "__main__":
    main()
