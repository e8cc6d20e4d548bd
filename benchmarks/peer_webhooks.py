"""
paymentsite beside a peer, dj-stripe (benchmarks/peer/: its own virtualenv, its
latest release supporting Django 5.2), on the same machine, the same local
Stripe and the same PostgreSQL (a database each), both under gunicorn with the
same settings (one worker, 4 threads, persistent connections with health checks,
DEBUG off): the same signed events posted to each from the same 8 client threads.

The events are about objects that exist at the local Stripe, because dj-stripe
reads every object back from Stripe before it records it: for each payment a
PaymentIntent paid there (pm_card_visa), a quarter of it refunded there, and a
dispute of its charge opened there (its books, devkit/stripe_ledger.py:
`POST /_ledger/disputes`, the amount and the dispute fee withdrawn). Each event
carries the object as the local Stripe answers it (the dispute: its
`GET /v1/disputes/{id}`), so dj-stripe's read-back finds the same object. (Until
the books had disputes the benchmark posted a made-up Dispute that the local
Stripe answered 404 for, and dj-stripe answered 500 to every
`charge.dispute.created`.) Five events each, posted phase by phase (all the
`payment_intent.created`, then all the `payment_intent.succeeded`, ...):
payment_intent.created, payment_intent.succeeded, refund.created, charge.refunded,
charge.dispute.created.

- paymentsite: `POST /webhooks/stripe/` verifies, stores and queues; two
  background workers (4 jobs at once each) apply while the events arrive. Its
  throughput is the answers' and, end to end, from the first POST to the last
  event applied (`processed_at`).
- dj-stripe: its `ProcessWebhookView` verifies the signature, stores a trigger,
  retrieves the object from Stripe and syncs it, all inside the request: its
  answer is its apply.

Applied means: ours, each event's outcome and then the payment's status, refunded
amount and dispute (amount and status); dj-stripe, its Event row and the synced
object (the PaymentIntent's status, the refund, the charge's refunded amount,
the dispute's charge, amount and status).

    .venv/bin/python -m benchmarks.peer_webhooks [--payments 300] [--quick]

Sets up benchmarks/peer/.venv on first use (benchmarks/peer/setup.sh, pinned
benchmarks/peer/requirements.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import stripe

from benchmarks.engine import post_all
from benchmarks.harness import ADMIN_DSN, fresh_database, machine, percentile, print_table, setup_django
from devkit.fakestripe import FakeStripe
from devkit.processes import DEFAULT_HOST, PROJECT_ROOT, free_port
from devkit.siteserver import TEST_SECRET_KEY, TEST_STRIPE_KEY, TEST_WEBHOOK_SECRET, SiteServer
from devkit.workers import JobWorker

OURS_DATABASE = "perf_bench_peer_ours"
PEER_DATABASE = "perf_bench_peer_djstripe"
PEER_DIR = PROJECT_ROOT / "benchmarks" / "peer"
PEER_PYTHON = PEER_DIR / ".venv" / "bin" / "python"
EVENT_TYPES = (
    "payment_intent.created",
    "payment_intent.succeeded",
    "refund.created",
    "charge.refunded",
    "charge.dispute.created",
)
THREADS = 4
# dj-stripe refuses a key that is not letters and digits after `sk_test_`; the local Stripe takes any.
PEER_STRIPE_KEY = "sk_test_paymentsitePeerBenchmark0123456789"
CLIENTS = 8


# --- The peer's processes -------------------------------------------------------------


def ensure_peer_venv() -> None:
    """benchmarks/peer/.venv with the pinned requirements (setup.sh), made once."""
    if not PEER_PYTHON.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run(["sh", str(PEER_DIR / "setup.sh")], env={**os.environ, "PYTHON": base}, check=True)


def peer_env(stripe_api_base: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "djstripe_site.settings",
        "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
        "PEER_DATABASE": PEER_DATABASE,
        "STRIPE_SECRET_KEY": PEER_STRIPE_KEY,
        "STRIPE_API_BASE": stripe_api_base,
        "PYTHONUNBUFFERED": "1",
    }


def peer_manage(*args: str, stripe_api_base: str) -> str:
    result = subprocess.run(
        [str(PEER_PYTHON), "manage.py", *args],
        cwd=PEER_DIR,
        env=peer_env(stripe_api_base),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"peer manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def peer_database(stripe_api_base: str) -> str:
    """The peer's database made afresh and migrated, with its webhook endpoint; answers the endpoint's path."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PEER_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PEER_DATABASE}"')
    peer_manage("migrate", "-v", "0", stripe_api_base=stripe_api_base)
    # dj-stripe finds the account of its API key by GET /v1/account, which the local
    # Stripe lacks: the account is recorded beforehand, as the first call would.
    code = (
        "from django.conf import settings\n"
        "from djstripe.models import Account, APIKey, WebhookEndpoint\n"
        "account = Account.objects.create(id='acct_benchmark', livemode=False,"
        " stripe_data={'id': 'acct_benchmark', 'object': 'account'})\n"
        "key, _ = APIKey.objects.get_or_create_by_api_key(settings.STRIPE_TEST_SECRET_KEY)\n"
        "key.djstripe_owner_account = account\n"
        "key.save()\n"
        "endpoint = WebhookEndpoint.objects.create(id='we_benchmark', livemode=False, api_version='2025-10-29.clover',"
        f" enabled_events=['*'], secret={TEST_WEBHOOK_SECRET!r}, status='enabled', url='http://127.0.0.1/',"
        " djstripe_validation_method='verify_signature')\n"
        "print(endpoint.djstripe_uuid)\n"
    )
    endpoint_uuid = peer_manage("shell", "-c", code, stripe_api_base=stripe_api_base).strip().splitlines()[-1]
    return f"/stripe/webhook/{endpoint_uuid}/"


@contextlib.contextmanager
def peer_server(stripe_api_base: str):
    """dj-stripe's site under gunicorn (one worker, THREADS threads); answers its base URL."""
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="peer-"))
    with open(log_dir / "peer.log", "wb") as log:
        process = subprocess.Popen(
            [str(PEER_PYTHON), "-m", "gunicorn", "djstripe_site.wsgi", "--bind", f"{DEFAULT_HOST}:{port}",
             "--workers", "1", "--threads", str(THREADS), "--timeout", "60", "--graceful-timeout", "5"],
            cwd=PEER_DIR, env=peer_env(stripe_api_base), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://{DEFAULT_HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2)
            except urllib.error.HTTPError:
                break  # a 404 from Django: it answers
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the peer did not start:\n{(log_dir / 'peer.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield url, log_dir / "peer.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- The events ----------------------------------------------------------------------


def make_events(fake_stripe: FakeStripe, payments: int) -> tuple[list[list[tuple[str, str]]], list[dict]]:
    """
    The objects made at the local Stripe and their events; answers (phases: for
    each event type, (event id, body) of every payment; the plan: each payment's
    PaymentIntent, refund, charge and dispute ids and amounts).

    The dispute is opened at the local Stripe (`POST /_ledger/disputes`, its
    withdrawal and dispute fee in the books) and the event carries what
    `GET /v1/disputes/{id}` answers for it, as Stripe's own event would.
    """
    from webhooks.tests.factories import stripe_event

    client = stripe.StripeClient(TEST_STRIPE_KEY, base_addresses={"api": fake_stripe.api_base}, max_network_retries=0)
    run = uuid.uuid4().hex[:8]
    start = int(time.time()) - 60
    phases: list[list[tuple[str, str]]] = [[] for _ in EVENT_TYPES]
    plan = []
    for n in range(payments):
        amount = 4000 + 4 * n
        intent = client.v1.payment_intents.create(
            params={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True},
            options={"idempotency_key": f"peer-{run}-{n}"},
        ).to_dict()
        refund = client.v1.refunds.create(
            params={"payment_intent": intent["id"], "amount": amount // 4},
            options={"idempotency_key": f"peer-{run}-{n}-refund"},
        ).to_dict()
        charge_id = (
            intent["latest_charge"]["id"] if isinstance(intent["latest_charge"], dict) else intent["latest_charge"]
        )
        charge = client.v1.charges.retrieve(charge_id).to_dict()
        # As events carry them: the charge an id, no embedded charge list.
        intent.pop("charges", None)
        paid = {**intent, "latest_charge": charge_id}
        created = {**paid, "status": "requires_payment_method", "amount_received": 0, "latest_charge": None}
        opened = fake_stripe.open_dispute(payment_intent=intent["id"], amount=amount)
        dispute = client.v1.disputes.retrieve(opened["id"]).to_dict()
        objects = (created, paid, refund, charge, dispute)
        for phase, (event_type, obj) in enumerate(zip(EVENT_TYPES, objects, strict=True)):
            event = stripe_event(event_type, obj, created=start + phase)
            phases[phase].append((event["id"], json.dumps(event)))
        plan.append(
            {
                "intent": intent["id"],
                "amount": amount,
                "refund": refund["id"],
                "charge": charge_id,
                "dispute": dispute["id"],
            }
        )
    return phases, plan


def post_phases(url: str, phases: list[list[tuple[str, str]]]) -> tuple[list[float], dict[int, int], float, float]:
    """Every phase's bodies, one phase after the other; answers (latencies s, answers, seconds, started at)."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    seconds = 0.0
    started_at = time.time()
    for phase in phases:
        phase_latencies, phase_codes, elapsed = post_all(url, [body for _, body in phase], concurrency=CLIENTS)
        latencies += phase_latencies
        seconds += elapsed
        for code, count in phase_codes.items():
            codes[code] = codes.get(code, 0) + count
    return latencies, codes, seconds, started_at


def query(database: str, sql: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{database}") as conn:
        return conn.execute(sql, params or []).fetchall()


# --- Applied? ----------------------------------------------------------------------------


def ours_applied(phases, plan) -> dict[str, int]:
    """Per event type: how many of its events ours applied (outcome processed, and the payment shows it)."""
    applied = {}
    for event_type, phase in zip(EVENT_TYPES, phases, strict=True):
        outcomes = dict(
            query(
                OURS_DATABASE,
                "SELECT stripe_event_id, outcome FROM webhooks_webhookevent WHERE stripe_event_id = ANY(%s)",
                [[event_id for event_id, _ in phase]],
            )
        )
        applied[event_type] = sum(outcomes.get(event_id) == "processed" for event_id, _ in phase)
    intents = [p["intent"] for p in plan]
    payments = dict(
        query(
            OURS_DATABASE,
            "SELECT stripe_payment_intent_id, status || ':' || refunded_amount FROM payments_payment"
            " WHERE stripe_payment_intent_id = ANY(%s)",
            [intents],
        )
    )
    refunds = {r for (r,) in query(OURS_DATABASE, "SELECT stripe_refund_id FROM refunds_refund", [])}
    disputes = dict(query(OURS_DATABASE, "SELECT stripe_dispute_id, amount || ':' || status FROM payments_dispute", []))
    expected = {p["intent"]: f"partially_refunded:{p['amount'] // 4}" for p in plan}
    applied["payments in their final state"] = sum(payments.get(i) == s for i, s in expected.items())
    applied["refunds recorded"] = sum(p["refund"] in refunds for p in plan)
    applied["disputes recorded"] = sum(disputes.get(p["dispute"]) == f"{p['amount']}:needs_response" for p in plan)
    return applied


def peer_applied(phases, plan) -> dict[str, int]:
    """Per event type: dj-stripe's Event row and the object it synced, as the event says it should be."""
    stored = {
        e
        for (e,) in query(
            PEER_DATABASE,
            "SELECT id FROM djstripe_event WHERE id = ANY(%s)",
            [[event_id for phase in phases for event_id, _ in phase]],
        )
    }
    intents = dict(query(PEER_DATABASE, "SELECT id, stripe_data->>'status' FROM djstripe_paymentintent", []))
    refunds = {r for (r,) in query(PEER_DATABASE, "SELECT id FROM djstripe_refund", [])}
    charges = dict(query(PEER_DATABASE, "SELECT id, stripe_data->>'amount_refunded' FROM djstripe_charge", []))
    disputes = dict(
        query(
            PEER_DATABASE,
            "SELECT id, charge_id || ':' || (stripe_data->>'amount') || ':' || (stripe_data->>'status')"
            " FROM djstripe_dispute",
            [],
        )
    )

    def disputed(p: dict) -> bool:
        return disputes.get(p["dispute"]) == f"{p['charge']}:{p['amount']}:needs_response"

    checks = {
        "payment_intent.created": lambda p: p["intent"] in intents,
        "payment_intent.succeeded": lambda p: intents.get(p["intent"]) == "succeeded",
        "refund.created": lambda p: p["refund"] in refunds,
        "charge.refunded": lambda p: int(charges.get(p["charge"]) or 0) == p["amount"] // 4,
        "charge.dispute.created": disputed,
    }
    applied = {}
    for event_type, phase in zip(EVENT_TYPES, phases, strict=True):
        applied[event_type] = sum(
            event_id in stored and checks[event_type](p) for (event_id, _), p in zip(phase, plan, strict=True)
        )
    applied["payments in their final state"] = sum(
        intents.get(p["intent"]) == "succeeded" and int(charges.get(p["charge"]) or 0) == p["amount"] // 4 for p in plan
    )
    applied["refunds recorded"] = sum(p["refund"] in refunds for p in plan)
    applied["disputes recorded"] = sum(disputed(p) for p in plan)
    return applied


def log_errors(log: Path) -> dict[str, int]:
    """Exception class names in a server log's tracebacks, counted."""
    found: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        head = line.split(":", 1)[0].strip()
        if head and " " not in head and (head.endswith("Error") or head.endswith("Exception")):
            name = head.rsplit(".", 1)[-1]
            found[name] = found.get(name, 0) + 1
    return found


# --- The run -------------------------------------------------------------------------------


def wait_applied_ours(event_ids: list[str], timeout: float = 600) -> float:
    """Waits until no event is pending; answers the last processed_at (Unix seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (pending,) = query(
            OURS_DATABASE,
            "SELECT count(*) FROM webhooks_webhookevent WHERE stripe_event_id = ANY(%s) AND outcome = 'pending'",
            [event_ids],
        )[0]
        if not pending:
            break
        time.sleep(0.2)
    (last,) = query(
        OURS_DATABASE,
        "SELECT extract(epoch FROM max(processed_at)) FROM webhooks_webhookevent WHERE stripe_event_id = ANY(%s)",
        [event_ids],
    )[0]
    return float(last or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--payments", type=int, default=300, help="payments, five events each (300)")
    parser.add_argument("--workers", type=int, default=2, help="our background workers (2, x 4 jobs)")
    parser.add_argument("--quick", action="store_true", help="20 payments: check that it runs")
    args = parser.parse_args()
    payments = 20 if args.quick else args.payments

    ensure_peer_venv()
    fresh_database(OURS_DATABASE)
    with FakeStripe.start() as fake_stripe:
        setup_django(OURS_DATABASE, stripe_api_base=fake_stripe.api_base)
        phases, plan = make_events(fake_stripe, payments)
        event_ids = [event_id for phase in phases for event_id, _ in phase]
        results = {}

        with SiteServer.start(
            database_name=OURS_DATABASE, stripe_api_base=fake_stripe.api_base, workers=1, threads=THREADS
        ) as site:
            workers = [
                JobWorker.start(database_name=OURS_DATABASE, stripe_api_base=fake_stripe.api_base, concurrency=4)
                for _ in range(args.workers)
            ]
            try:
                latencies, codes, seconds, started_at = post_phases(site.url + "/webhooks/stripe/", phases)
                last_applied = wait_applied_ours(event_ids)
            finally:
                for worker in workers:
                    worker.stop()
            results["paymentsite"] = (latencies, codes, seconds, last_applied - started_at, site.log_dir / "site.log")
            applied_ours = ours_applied(phases, plan)

        path = peer_database(fake_stripe.api_base)
        with peer_server(fake_stripe.api_base) as (url, log):
            latencies, codes, seconds, _ = post_phases(url + path, phases)
            results["dj-stripe 2.11.0"] = (latencies, codes, seconds, seconds, log)
            errors_peer = log_errors(log)
        applied_peer = peer_applied(phases, plan)

    rows = []
    for name, (latencies, codes, seconds, end_to_end, _) in results.items():
        rows.append(
            [
                name,
                len(latencies),
                ", ".join(f"{code}: {count}" for code, count in sorted(codes.items())),
                f"{len(latencies) / seconds:.0f}",
                f"{statistics.median(latencies) * 1000:.1f}",
                f"{percentile(latencies, 0.99) * 1000:.1f}",
                f"{len(latencies) / end_to_end:.0f}" if end_to_end > 0 else "-",
            ]
        )
    print_table(
        f"Webhooks beside dj-stripe: {payments} payments x 5 events, one gunicorn worker x {THREADS} threads each, "
        f"{CLIENTS} client threads, ours with {args.workers} background workers x 4 jobs, on {machine()}",
        ["site", "events", "answers", "answered per second", "p50 ms", "p99 ms", "applied per second (end to end)"],
        rows,
    )
    print_table(
        f"Applied, of {payments} each",
        ["event type / outcome", "paymentsite", "dj-stripe 2.11.0"],
        [[key, applied_ours[key], applied_peer[key]] for key in applied_ours],
    )
    failures = query(
        PEER_DATABASE,
        "SELECT body::jsonb->>'type', left(exception, 120), count(*) FROM djstripe_webhookeventtrigger"
        " WHERE exception <> '' GROUP BY 1, 2 ORDER BY 1",
    )
    if failures:
        print("\nWhat dj-stripe could not process (its webhook triggers' recorded exceptions):\n")
        for event_type, exception, count in failures:
            print(f"- {event_type}: {count} x {exception}")
    if errors_peer:
        print("\ndj-stripe's log, exceptions: " + ", ".join(f"{k}: {v}" for k, v in sorted(errors_peer.items())))


if __name__ == "__main__":
    main()
