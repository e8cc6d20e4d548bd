"""
Notifications to the storefront: how many deliveries per second real background
workers (`manage.py procrastinate worker`) make to a local receiver, with 1 and
with 4 worker processes, and the lag from a state change's commit to the
receiver having verified its notification (p50, p99).

Everything is real: a database of its own (recreated), the workers in their own
processes (production's defaults: 4 jobs at once each), the receiver
(devkit.receiver) an HTTP server in this process that verifies every signature
with the standardwebhooks library, as a storefront would. A state change is a
payment moving to `succeeded` through its model's transition, saved in its own
transaction: the outbox writes its event, one delivery and its job.

- Throughput: with the workers running and idle, `--events` changes committed in
  one transaction; deliveries/s is their count over the time from that commit to
  the last notification verified.
- Lag: `--lag-events` changes, one transaction each, at `--rate` per second; the
  lag of each is from its commit to its notification verified (same clock).
- Cost: what the outbox adds to a change's transaction (the event, its delivery
  and job written with it): `--cost-events` changes timed with the outbox, then
  as many with its receivers disconnected in this process, in alternation.

    .venv/bin/python -m benchmarks.notifications [--events 500] [--lag-events 200] [--rate 20] [--workers 1,4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from benchmarks.harness import NO_STRIPE, fresh_database, machine, percentile, print_table, setup_django
from devkit.receiver import NotificationReceiver
from devkit.workers import JobWorker

DATABASE = "paymentsite_bench_notifications"
# The workers run nothing but notifications: no periodic job of the site's is scheduled.
WORKER_ENV = {
    "SCHEDULE_RECONCILE": "",
    "SCHEDULE_RETRY_REFUNDS": "",
    "SCHEDULE_OVERDUE_PAYMENTS": "",
    "SCHEDULE_STALLED_JOBS": "",
}
WAIT_SECONDS = 300


def storefront(receiver: NotificationReceiver):
    """The API user whose payments the benchmark makes, and its endpoint on the receiver."""
    from django.contrib.auth.models import User

    from notifications.models import Endpoint

    user, _ = User.objects.get_or_create(username="benchmark-shop")
    endpoint = Endpoint.objects.create(url=receiver.url_for("shop"), owner=user)
    receiver.trust("shop", endpoint.secret)
    return user


def change(user, number: int):
    """One state change a storefront hears of: a new payment of `user` succeeds. Answers the payment."""
    from django.db import transaction
    from django.utils import timezone

    from payments.models import Payment

    payment = Payment.objects.create(
        user=user, amount=2000, currency="usd", stripe_payment_intent_id=f"pi_bench_{number:08d}_{time.time_ns()}"
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        payment.apply_stripe_status(Payment.Status.SUCCEEDED, at=timezone.now())
        payment.save()
    return payment


def event_ids(payments) -> dict[str, object]:
    from notifications.models import Event

    return {event.public_id: event for event in Event.objects.filter(payment__in=payments)}


def wait_until_verified(receiver: NotificationReceiver, ids) -> dict[str, float]:
    """When the receiver first verified each of `ids` (its clock: time.time())."""
    wanted = set(ids)
    receiver.wait_for(
        lambda: wanted <= {r.webhook_id for r in receiver.acknowledged("shop")},
        timeout=WAIT_SECONDS,
        what=f"{len(wanted)} notifications",
    )
    first: dict[str, float] = {}
    for record in receiver.acknowledged("shop"):
        if record.webhook_id in wanted:
            first.setdefault(record.webhook_id, record.at)
    return first


def throughput(user, receiver: NotificationReceiver, count: int) -> tuple[float, float]:
    """(seconds, deliveries per second) for `count` changes committed at once."""
    from django.db import transaction

    with transaction.atomic():
        payments = [change(user, number) for number in range(count)]
        ids = event_ids(payments)
    committed = time.time()
    arrived = wait_until_verified(receiver, ids)
    seconds = max(arrived.values()) - committed
    return seconds, count / seconds


def lag(user, receiver: NotificationReceiver, count: int, rate: float) -> list[float]:
    """Seconds from each change's commit to its notification verified, changes made at `rate` per second."""
    committed: dict[str, float] = {}
    start = time.monotonic()
    for number in range(count):
        # A steady pace, not a burst: the n-th change is made at n / rate seconds.
        time.sleep(max(0.0, start + number / rate - time.monotonic()))
        payment = change(user, 1_000_000 + number)
        committed_at = time.time()
        (event_id,) = event_ids([payment])
        committed[event_id] = committed_at
    arrived = wait_until_verified(receiver, committed)
    return [arrived[event_id] - at for event_id, at in committed.items()]


def cost(user, count: int) -> list[list[object]]:
    """Milliseconds per change (p50, p99), with the outbox and with it disconnected, alternating."""
    from django.db.models.signals import post_save, pre_save

    from notifications import outbox
    from payments.models import Payment

    def disconnect():
        pre_save.disconnect(sender=Payment, dispatch_uid="notifications-before-Payment")
        post_save.disconnect(sender=Payment, dispatch_uid="notifications-payment")

    timings: dict[bool, list[float]] = {True: [], False: []}
    for number in range(2 * count):
        with_outbox = number % 2 == 0
        if not with_outbox:
            disconnect()
        started = time.perf_counter()
        change(user, 2_000_000 + number)
        timings[with_outbox].append(time.perf_counter() - started)
        outbox.connect()
    return [
        [label, count, f"{statistics.median(values) * 1000:.2f}", f"{percentile(values, 0.99) * 1000:.2f}"]
        for label, values in (
            ("with the outbox (event, delivery, job)", timings[True]),
            ("outbox disconnected", timings[False]),
        )
    ]


def measure(worker_count: int, *, events: int, lag_events: int, rate: float) -> list[object]:
    with NotificationReceiver.start() as receiver, contextlib.ExitStack() as stack:
        user = storefront(receiver)
        for _ in range(worker_count):
            stack.enter_context(
                JobWorker.start(database_name=DATABASE, stripe_api_base=NO_STRIPE, extra_env=WORKER_ENV)
            )
        seconds, per_second = throughput(user, receiver, events)
        lags = lag(user, receiver, lag_events, rate)
        # The endpoint goes with its receiver: the next round has its own.
        user.notification_endpoints.update(enabled=False)
        duplicates = len(receiver.acknowledged("shop")) - len({r.webhook_id for r in receiver.acknowledged("shop")})
        unverified = len(receiver.unverified())
    if unverified:
        raise SystemExit(f"{unverified} notifications did not verify")
    return [
        worker_count,
        events,
        f"{seconds:.1f}",
        f"{per_second:.0f}",
        lag_events,
        f"{statistics.median(lags) * 1000:.0f}",
        f"{percentile(lags, 0.99) * 1000:.0f}",
        duplicates,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--events", type=int, default=500, help="changes committed at once (default 500)")
    parser.add_argument("--lag-events", type=int, default=200, help="changes made one by one (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second for the lag (default 20)")
    parser.add_argument("--workers", default="1,4", help="worker processes per round, comma list (default 1,4)")
    parser.add_argument("--cost-events", type=int, default=300, help="changes timed each way (default 300)")
    args = parser.parse_args()
    fresh_database(DATABASE)
    setup_django(DATABASE, stripe_api_base=NO_STRIPE)
    with NotificationReceiver.start() as receiver:
        # An enabled endpoint hears of the changes, so each writes a delivery and a job; no worker sends them.
        user = storefront(receiver)
        cost_rows = cost(user, args.cost_events)
        user.notification_endpoints.update(enabled=False)
    rows = [
        measure(int(count), events=args.events, lag_events=args.lag_events, rate=args.rate)
        for count in args.workers.split(",")
    ]
    print_table(
        f"Notifications delivered to a local receiver that verifies each signature, on {machine()}",
        ["worker processes (x4 jobs)", "burst", "seconds", "deliveries/s", "paced", "lag p50 ms", "lag p99 ms",
         "sent twice"],
        rows,
    )  # fmt: skip
    print_table(
        "What the outbox adds to a change (a new payment, then its move to succeeded, in two transactions)",
        ["change", "count", "p50 ms", "p99 ms"],
        cost_rows,
    )


if __name__ == "__main__":
    main()
