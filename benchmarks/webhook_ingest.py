"""
Webhook ingest: how many signed Stripe events per second one server process
verifies, stores and queues, and at what latency, against a bare Django view
doing one INSERT of the same body on the same server in the same run. (Since
the background engine, applying is a worker's job: `benchmarks.engine` measures
both, with the rounds alternated; this is the older, simpler run.)

The server is one gunicorn worker process (threads configurable) on a database
of its own, recreated. Events are PaymentIntents created then succeeded, with a
share sent twice, as Stripe does; STRIPE_API_BASE points at a closed port, so a
handler that called Stripe would fail instead of looking slow. At the end a
background worker applies them and the database is checked: every distinct
event stored once and applied.

    .venv/bin/python -m benchmarks.webhook_ingest [--events 1000] [--concurrency 8] [--threads 4]
        [--conn-max-age 60]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests
import stripe

from benchmarks.harness import NO_STRIPE, fresh_database, machine, percentile, print_table, setup_django
from devkit.siteserver import TEST_WEBHOOK_SECRET, SiteServer
from devkit.workers import JobWorker

DATABASE = "paymentsite_bench_ingest"


def build_events(count: int, duplicate_share: float) -> tuple[list[str], int]:
    """Event bodies: each PaymentIntent created, then succeeded; a share sent twice. Answers (bodies, distinct)."""
    from webhooks.tests.factories import payment_intent_event

    now = int(time.time())
    distinct = []
    while len(distinct) < count:
        intent_id = f"pi_bench_{len(distinct):07d}"
        for offset, event_type in enumerate(("payment_intent.created", "payment_intent.succeeded")):
            distinct.append(json.dumps(payment_intent_event(event_type, intent_id=intent_id, created=now + offset)))
    distinct = distinct[:count]
    bodies = distinct + random.sample(distinct, int(count * duplicate_share))
    random.shuffle(bodies)
    return bodies, len(distinct)


def post_all(url: str, bodies: list[str], concurrency: int) -> tuple[list[float], dict[int, int], float]:
    """POST every body, signed as Stripe signs, from `concurrency` threads; answers (latencies s, codes, elapsed s)."""
    local = threading.local()

    def post(body: str) -> tuple[float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        signature = stripe.WebhookSignature.generate_signature_header(
            body, TEST_WEBHOOK_SECRET, timestamp=int(time.time())
        )
        started = time.perf_counter()
        response = session.post(
            url, data=body.encode(), headers={"Content-Type": "application/json", "Stripe-Signature": signature}
        )
        return time.perf_counter() - started, response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    codes: dict[int, int] = {}
    for _, code in results:
        codes[code] = codes.get(code, 0) + 1
    return [latency for latency, _ in results], codes, elapsed


def stored_events() -> tuple[int, int]:
    """(webhook events stored from Stripe, of which processed) in the benchmark's database."""
    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{DATABASE}") as conn:
        return conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'processed') FROM webhooks_webhookevent"
            " WHERE stripe_event_id NOT LIKE 'bare_%'"
        ).fetchone()


def measure(*, events: int, concurrency: int, threads: int, conn_max_age: int) -> list[list[object]]:
    """Rows of the figures table: the webhook endpoint, then the bare INSERT, on one server."""
    fresh_database(DATABASE)
    bodies, distinct = build_events(events, duplicate_share=0.1)
    with SiteServer.start(
        database_name=DATABASE,
        stripe_api_base=NO_STRIPE,
        workers=1,
        threads=threads,
        settings_module="benchmarks.settings",
        extra_env={"CONN_MAX_AGE": str(conn_max_age)},
    ) as site:
        webhook = post_all(site.url + "/webhooks/stripe/", bodies, concurrency)
        bare = post_all(site.url + "/bench/insert/", bodies, concurrency)
    with JobWorker.start(database_name=DATABASE, stripe_api_base=NO_STRIPE, concurrency=4):
        deadline = time.monotonic() + 300
        while stored_events()[1] < distinct and time.monotonic() < deadline:
            time.sleep(0.2)
    stored, processed = stored_events()
    if stored != distinct or processed != distinct or webhook[1] != {200: len(bodies)}:
        raise SystemExit(f"Events lost, applied twice or refused: {stored=} {processed=} {distinct=} {webhook[1]}")
    return [
        [name, len(bodies), f"{len(bodies) / elapsed:.0f}", f"{statistics.median(lat) * 1000:.1f}",
         f"{percentile(lat, 0.99) * 1000:.1f}"]
        for name, (lat, _codes, elapsed) in (
            ("POST /webhooks/stripe/ (verify, store once, queue)", webhook),
            ("bare view: one INSERT of the body", bare),
        )
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--events", type=int, default=1000, help="distinct events (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the one gunicorn worker (default 4)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="the server's CONN_MAX_AGE (0: reconnect)")
    args = parser.parse_args()
    setup_django(DATABASE, stripe_api_base=NO_STRIPE)
    rows = measure(
        events=args.events, concurrency=args.concurrency, threads=args.threads, conn_max_age=args.conn_max_age
    )
    print_table(
        f"Webhook ingest, one gunicorn worker x {args.threads} threads, {args.concurrency} clients, "
        f"CONN_MAX_AGE={args.conn_max_age}, on {machine()}",
        ["endpoint", "requests", "per second", "p50 ms", "p99 ms"],
        rows,
    )


if __name__ == "__main__":
    main()
