"""
Webhook ingest benchmark (not a test): how many signed Stripe events per second
one server process verifies, stores and applies, and at what latency.

It creates (or empties) a dedicated database, migrates it, starts gunicorn with
one worker on 127.0.0.1, posts N signed events from C client threads, then checks
the database: every distinct event stored once and applied. Duplicates are mixed
in, as Stripe sends them. STRIPE_API_BASE points at a closed port, so a handler
that called Stripe would fail loudly instead of looking slow.

    .venv/bin/python benchmarks/webhook_ingest.py [--events 1000] [--concurrency 8] [--threads 4]
        [--conn-max-age 60] [--database-url postgres://postgres@127.0.0.1:5432/paymentsite_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_benchmark_only"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/paymentsite_bench"


def server_environment(database_url: str, conn_max_age: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CONN_MAX_AGE": str(conn_max_age),
        # whitenoise's notice that collectstatic has not run: irrelevant here.
        "PYTHONWARNINGS": "ignore:No directory at",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key",
        "STRIPE_SECRET_KEY": "sk_test_benchmark",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        # Nothing listens on port 9: a call to Stripe on the webhook path would fail the event.
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "STRIPE_TIMEOUT": "1",
    }


def fresh_database(database_url: str) -> None:
    url = urllib.parse.urlsplit(database_url)
    name = url.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_events(count: int, duplicate_share: float) -> tuple[list[str], int]:
    """Event bodies: each PaymentIntent created, then succeeded; some sent twice. Answers (bodies, distinct)."""
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
    import stripe

    local = threading.local()

    def post(body: str) -> tuple[float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        header = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=int(time.time()))
        started = time.perf_counter()
        response = session.post(
            url, data=body.encode(), headers={"Content-Type": "application/json", "Stripe-Signature": header}
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


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="distinct events to post (default 1000)")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share re-posted as duplicates (default 0.1)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the one gunicorn worker (default 4)")
    parser.add_argument(
        "--conn-max-age", type=int, default=60, help="CONN_MAX_AGE of the server (default 60; 0 reconnects per request)"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="a database it may drop and recreate")
    args = parser.parse_args()

    env = server_environment(args.database_url, args.conn_max_age)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paymentsite.settings")
    django.setup()

    fresh_database(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
    bodies, distinct = build_events(args.events, args.duplicates)

    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "paymentsite.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
        + ["--threads", str(args.threads), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", server)
        latencies, codes, elapsed = post_all(f"http://127.0.0.1:{port}/webhooks/stripe/", bodies, args.concurrency)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)

    from payments.models import Payment
    from webhooks.models import WebhookEvent

    stored = WebhookEvent.objects.count()
    processed = WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.PROCESSED).count()
    succeeded = Payment.objects.filter(status=Payment.Status.SUCCEEDED).count()
    latencies.sort()
    print(
        f"gunicorn: 1 worker x {args.threads} threads, CONN_MAX_AGE={args.conn_max_age}; "
        f"{args.concurrency} client threads"
    )
    print(f"posted {len(bodies)} requests ({distinct} distinct events, {len(bodies) - distinct} duplicates)")
    print(f"answers: {dict(sorted(codes.items()))}")
    print(f"stored {stored} events, {processed} processed; {succeeded} payments succeeded")
    print(f"throughput: {len(bodies) / elapsed:.0f} requests/s, {distinct / elapsed:.0f} distinct events/s")
    print(
        f"latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    if stored != distinct or processed != distinct or codes.get(200) != len(bodies):
        raise SystemExit("Some events were lost, applied twice or refused.")


if __name__ == "__main__":
    main()
