"""
The background engine (issue 12): how fast Stripe's events are acknowledged, and
how fast the workers apply them.

1. Acknowledgement: signed events posted to one gunicorn worker (4 threads) from 8
   client threads, no background worker running, so each answer is verify, store
   and queue only; beside it, on the same server in the same run, the bare view
   that does one INSERT of the same body (benchmarks/urls.py). Goal: at least 0.8x
   its throughput.
2. Apply, with 1, 2 and 4 worker processes (`manage.py procrastinate worker`, 4
   jobs at once each): throughput, a backlog of events stored with no worker
   running, then drained by the workers (events applied per second, first job
   taken to last applied); lag, events posted at a steady rate while the workers
   run, from each POST to its event's `processed_at` (p50, p99).

Events are PaymentIntents made elsewhere (adopted from their own events, no call
to Stripe; STRIPE_API_BASE points at a closed port), created then succeeded: two
events per PaymentIntent, applied one at a time by its lock. The database is the
benchmark's own, recreated; every event is checked stored once and processed.

    .venv/bin/python -m benchmarks.engine [--events 2000] [--backlog 2000] [--lag-events 600] [--rate 40]
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
from devkit.workers import FAST_RECOVERY_ENV, JobWorker

DATABASE = "paymentsite_bench_engine"
DSN = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
WORKER_COUNTS = (1, 2, 4)
# The benchmark's workers: production's timings, no periodic job but the stalled-job recovery.
WORKER_ENV = {**{key: value for key, value in FAST_RECOVERY_ENV.items() if key.startswith("SCHEDULE_")}}


def build_events(count: int, *, prefix: str) -> list[tuple[str, str]]:
    """(event id, body) of `count` events: PaymentIntents created, then succeeded, shuffled."""
    from webhooks.tests.factories import payment_intent_event

    now = int(time.time())
    events = []
    for n in range((count + 1) // 2):
        intent_id = f"pi_{prefix}_{n:07d}"
        for offset, event_type in enumerate(("payment_intent.created", "payment_intent.succeeded")):
            event = payment_intent_event(event_type, intent_id=intent_id, amount=1000 + n, created=now + offset)
            events.append((event["id"], json.dumps(event)))
    events = events[:count]
    random.Random(prefix).shuffle(events)
    return events


def post(session: requests.Session, url: str, body: str) -> tuple[float, float, int]:
    """POST one body signed as Stripe signs it; answers (sent at, latency s, status)."""
    signature = stripe.WebhookSignature.generate_signature_header(body, TEST_WEBHOOK_SECRET, timestamp=int(time.time()))
    sent_at = time.time()
    started = time.perf_counter()
    response = session.post(
        url, data=body.encode(), headers={"Content-Type": "application/json", "Stripe-Signature": signature}
    )
    return sent_at, time.perf_counter() - started, response.status_code


def post_all(url: str, bodies: list[str], *, concurrency: int) -> tuple[list[float], dict[int, int], float]:
    """Every body as fast as `concurrency` threads go; answers (latencies s, answer counts, seconds)."""
    local = threading.local()

    def one(body: str) -> tuple[float, float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        return post(session, url, body)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, bodies))
    elapsed = time.perf_counter() - started
    codes: dict[int, int] = {}
    for _, _, code in results:
        codes[code] = codes.get(code, 0) + 1
    return [latency for _, latency, _ in results], codes, elapsed


def post_at_rate(url: str, events: list[tuple[str, str]], *, rate: float) -> dict[str, float]:
    """Post one event every 1/rate s, each from a thread of its own pool; answers each event's send time."""
    sent: dict[str, float] = {}
    local = threading.local()

    def one(item: tuple[str, str]) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        sent_at, _, code = post(session, url, item[1])
        if code == 200:
            sent[item[0]] = sent_at

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n, item in enumerate(events):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, item)
    return sent


def query(sql: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(DSN) as conn:
        return conn.execute(sql, params or []).fetchall()


def outcomes(event_ids: list[str]) -> dict[str, int]:
    rows = query(
        "SELECT outcome, count(*) FROM webhooks_webhookevent WHERE stripe_event_id = ANY(%s) GROUP BY outcome",
        [event_ids],
    )
    return dict(rows)


def wait_applied(event_ids: list[str], *, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while outcomes(event_ids).get("pending", 0) and time.monotonic() < deadline:
        time.sleep(0.2)


def start_workers(count: int, per_worker: int) -> list[JobWorker]:
    workers = [
        JobWorker.start(
            database_name=DATABASE,
            stripe_api_base=NO_STRIPE,
            concurrency=per_worker,
            extra_env=WORKER_ENV,
            wait=False,
        )
        for _ in range(count)
    ]
    for worker in workers:
        worker.wait_until_ready()
    return workers


def check(event_ids: list[str], what: str) -> None:
    found = outcomes(event_ids)
    if found != {"processed": len(event_ids)}:
        raise SystemExit(f"{what}: events not all stored once and processed: {found}")


def acknowledgement(url: str, *, events: int, concurrency: int, rounds: int = 10) -> tuple[list[list[object]], list]:
    """
    Rows: the webhook endpoint (verify, store, queue), then the bare INSERT, the
    same bodies on the same server, posted in alternate rounds (one round of
    each, `rounds` times) so that both meet the same load on a shared machine.
    Answers (rows, the distinct events' ids).
    """
    items = build_events(events, prefix="ack")
    bodies = [body for _, body in items]
    # 10% sent twice, as Stripe does: answered 200, nothing queued.
    bodies += random.Random(1).sample(bodies, events // 10)
    random.Random(2).shuffle(bodies)
    totals = {"webhook": ([], {}, 0.0), "bare": ([], {}, 0.0)}
    size = -(-len(bodies) // rounds)
    for start in range(0, len(bodies), size):
        chunk = bodies[start : start + size]
        for name, path in (("webhook", "/webhooks/stripe/"), ("bare", "/bench/insert/")):
            latencies, codes, elapsed = post_all(url + path, chunk, concurrency=concurrency)
            all_latencies, all_codes, all_elapsed = totals[name]
            for code, count in codes.items():
                all_codes[code] = all_codes.get(code, 0) + count
            totals[name] = (all_latencies + latencies, all_codes, all_elapsed + elapsed)
    webhook, bare = totals["webhook"], totals["bare"]
    if webhook[1] != {200: len(bodies)}:
        raise SystemExit(f"Webhook answers: {webhook[1]}")
    queued = query("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'webhooks.apply_event'")[0][0]
    if queued != events:
        raise SystemExit(f"{queued} jobs queued for {events} distinct events")
    rows = []
    for name, (latencies, _, elapsed) in (
        ("POST /webhooks/stripe/: verify, store, queue", webhook),
        ("bare view: one INSERT of the body", bare),
    ):
        rows.append(
            [
                name,
                len(latencies),
                f"{len(latencies) / elapsed:.0f}",
                f"{statistics.median(latencies) * 1000:.1f}",
                f"{percentile(latencies, 0.99) * 1000:.1f}",
            ]
        )
    ratio = (len(webhook[0]) / webhook[2]) / (len(bare[0]) / bare[2])
    rows.append(["ratio, webhook / bare", "", f"{ratio:.2f}x", "", ""])
    return rows, [event_id for event_id, _ in items]


def apply_throughput(url: str, *, workers: int, per_worker: int, backlog: int, concurrency: int) -> tuple[float, str]:
    """A backlog stored with no worker, then drained by `workers`; answers (events/s, event ids' check)."""
    items = build_events(backlog, prefix=f"backlog{workers}")
    post_all(url + "/webhooks/stripe/", [body for _, body in items], concurrency=concurrency)
    event_ids = [event_id for event_id, _ in items]
    started = time.perf_counter()
    running = start_workers(workers, per_worker)
    try:
        wait_applied(event_ids)
    finally:
        for worker in running:
            worker.stop()
    check(event_ids, f"backlog, {workers} workers")
    # From the first job taken to the last applied, by the database's clock: worker start-up is not apply time.
    (seconds,) = query(
        "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM webhooks_webhookevent"
        " WHERE stripe_event_id = ANY(%s)",
        [event_ids],
    )[0]
    return backlog / float(seconds), f"{started:.0f}"


def apply_lag(url: str, *, workers: int, per_worker: int, events: int, rate: float) -> tuple[float, float]:
    """Events posted at `rate` per second while `workers` run; answers (p50, p99) seconds from POST to applied."""
    items = build_events(events, prefix=f"lag{workers}")
    running = start_workers(workers, per_worker)
    try:
        sent = post_at_rate(url + "/webhooks/stripe/", items, rate=rate)
        event_ids = [event_id for event_id, _ in items]
        wait_applied(event_ids)
    finally:
        for worker in running:
            worker.stop()
    check(event_ids, f"lag, {workers} workers")
    applied = dict(
        query(
            "SELECT stripe_event_id, extract(epoch FROM processed_at) FROM webhooks_webhookevent"
            " WHERE stripe_event_id = ANY(%s)",
            [event_ids],
        )
    )
    lags = [float(applied[event_id]) - sent_at for event_id, sent_at in sent.items()]
    return statistics.median(lags), percentile(lags, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--events", type=int, default=2000, help="distinct events for the acknowledgement (2000)")
    parser.add_argument("--backlog", type=int, default=2000, help="events drained by the workers, per count (2000)")
    parser.add_argument("--lag-events", type=int, default=600, help="events posted at --rate, per count (600)")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second for the lag (40)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the one gunicorn worker (default 4)")
    parser.add_argument("--per-worker", type=int, default=4, help="jobs at once per worker process (default 4)")
    parser.add_argument("--ack-only", action="store_true", help="only the acknowledgement's figures")
    args = parser.parse_args()

    fresh_database(DATABASE)
    setup_django(DATABASE, stripe_api_base=NO_STRIPE)
    with SiteServer.start(
        database_name=DATABASE,
        stripe_api_base=NO_STRIPE,
        workers=1,
        threads=args.threads,
        settings_module="benchmarks.settings",
    ) as site:
        ack_rows, ack_ids = acknowledgement(site.url, events=args.events, concurrency=args.concurrency)
        if args.ack_only:
            print_table("Acknowledgement", ["endpoint", "requests", "per second", "p50 ms", "p99 ms"], ack_rows)
            return
        # The acknowledged events are applied too (and checked), before the apply figures start.
        drained = start_workers(2, args.per_worker)
        wait_applied(ack_ids)
        for worker in drained:
            worker.stop()
        check(ack_ids, "acknowledged events")
        apply_rows = []
        for count in WORKER_COUNTS:
            throughput, _ = apply_throughput(
                site.url, workers=count, per_worker=args.per_worker, backlog=args.backlog, concurrency=args.concurrency
            )
            p50, p99 = apply_lag(
                site.url, workers=count, per_worker=args.per_worker, events=args.lag_events, rate=args.rate
            )
            apply_rows.append([count, f"{throughput:.0f}", f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}"])

    print_table(
        f"Acknowledgement: one gunicorn worker x {args.threads} threads, {args.concurrency} client threads, "
        f"{args.events} distinct events + 10% duplicates, no background worker, on {machine()}",
        ["endpoint", "requests", "per second", "p50 ms", "p99 ms"],
        ack_rows,
    )
    print_table(
        f"Apply: worker processes x {args.per_worker} jobs at once; throughput on a backlog of {args.backlog} "
        f"events, lag on {args.lag_events} events posted at {args.rate:.0f}/s, on {machine()}",
        ["workers", "applied per second (backlog)", "lag p50 ms (POST to applied)", "lag p99 ms"],
        apply_rows,
    )


if __name__ == "__main__":
    main()
