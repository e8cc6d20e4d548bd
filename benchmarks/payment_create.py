"""
POST /api/payments/ against a direct SDK create of a PaymentIntent, to the same
local Stripe, in the same run: what our row, idempotency and bookkeeping cost
on top of Stripe's own call.

    python -m benchmarks.payment_create [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import requests
import stripe

from benchmarks.harness import api_token, fresh_database, machine, percentile, print_table
from devkit.fakestripe import FakeStripe
from devkit.siteserver import TEST_STRIPE_KEY, SiteServer

DATABASE = "paymentsite_bench_create"
BODY = {"amount": 2000, "currency": "usd", "description": "benchmark"}


def timed(call, count: int) -> list[float]:
    """Milliseconds of each of `count` sequential calls, after a few to warm up."""
    for _ in range(5):
        call()
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def measure(count: int, conn_max_age: int | None = None) -> list[list[object]]:
    fresh_database(DATABASE)
    token = api_token(DATABASE)
    extra_env = {} if conn_max_age is None else {"CONN_MAX_AGE": str(conn_max_age)}
    with (
        FakeStripe.start() as fake_stripe,
        SiteServer.start(
            database_name=DATABASE, stripe_api_base=fake_stripe.api_base, workers=1, extra_env=extra_env
        ) as site,
    ):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"

        def through_the_api() -> None:
            response = session.post(
                site.url + "/api/payments/", json=BODY, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30
            )
            assert response.status_code == 201, response.text

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

        fake_stripe.flush()
        sdk = timed(straight_to_stripe, count)
        fake_stripe.flush()
        api = timed(through_the_api, count)
    return [
        [name, count, f"{statistics.median(d):.1f}", f"{percentile(d, 0.99):.1f}", f"{1000 / statistics.mean(d):.0f}"]
        for name, d in (("direct SDK create (local Stripe)", sdk), ("POST /api/payments/ (1 gunicorn worker)", api))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--conn-max-age", type=int, default=None, help="override the server's CONN_MAX_AGE")
    args = parser.parse_args()
    rows = measure(args.requests, args.conn_max_age)
    print_table(
        f"Payment creation, sequential, on {machine()}",
        ["path", "requests", "median ms", "p99 ms", "per second"],
        rows,
    )


if __name__ == "__main__":
    main()
