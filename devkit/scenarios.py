"""
The proof scenarios of issue #7, in one place for the tests (small sizes) and
the benchmarks (full sizes): a storm of webhooks, refunds through Stripe's
faults, and crashes (a worker SIGKILLed in the middle of refunds, PostgreSQL
restarted in the middle of a storm), each against one or more real servers
(`SiteServer`) on one database.

The code runs in a process where Django is set up on the database the servers
use (the test database under pytest, a fresh one in a benchmark) with
STRIPE_API_BASE on the local Stripe. It prepares rows, drives the servers over
HTTP as Stripe and a storefront would, runs the operator's commands in-process,
and counts what it finds. The counts are what the tests assert and the
benchmarks print; a scenario asserts nothing itself.

Development and tests only: events are built with the webhooks tests' factories.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection
from django.test import override_settings

from core import stripe_gateway
from devkit.siteserver import TEST_WEBHOOK_SECRET
from payments.models import Payment
from payments.services import payment_create
from refunds.models import Refund
from refunds.tests.factories import pay_at_stripe
from refunds.tests.invariants import assert_refund_invariants
from webhooks.models import WebhookEvent
from webhooks.tests.factories import charge_object, payment_intent_event, refund_object, stripe_event

NO_ANSWER = "no answer"
# What a crashed request's refund lease lasts on the tests' servers (60 s in production).
SITE_SERVERS_LEASE_SECONDS = 3
REQUEST_TIMEOUT = 30


# --- Sending many requests at once -------------------------------------------


def send_concurrently(
    urls: list[str],
    items: list,
    send: Callable[[requests.Session, str, object], requests.Response],
    *,
    concurrency: int,
) -> list[int | str]:
    """
    Send every item from `concurrency` threads, item n to server n mod len(urls);
    answers each item's HTTP status, or NO_ANSWER when the connection failed
    (a killed worker, a server that is down).
    """
    local = threading.local()

    def one(indexed: tuple[int, object]) -> int | str:
        index, item = indexed
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            return send(session, urls[index % len(urls)], item).status_code
        except requests.RequestException:
            return NO_ANSWER

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, enumerate(items)))


def while_running(action: Callable[[], None] | None) -> threading.Thread | None:
    """Run `action` (a fault to inject: kill a worker, restart the database) beside the load."""
    if action is None:
        return None
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


# --- 1. The webhook storm ----------------------------------------------------

STORM_EVENTS_PER_PAYMENT = 10


@dataclass
class StormPayment:
    """What Stripe holds at the end for one payment of the storm: our expected final state."""

    intent_id: str
    amount: int
    # (Stripe id, amount, final status) of each refund.
    refunds: list[tuple[str, int, str]]
    # Our id when the app made the payment; None for one the storm makes us adopt.
    payment_id: uuid.UUID | None

    @property
    def refunded(self) -> int:
        return sum(amount for _, amount, status in self.refunds if status == Refund.Status.SUCCEEDED)

    @property
    def status(self) -> str:
        return Payment.Status.REFUNDED if self.refunded == self.amount else Payment.Status.PARTIALLY_REFUNDED


def storm_prepare(*, payments: int, user) -> tuple[dict[str, str], list[StormPayment]]:
    """
    The events of `payments` payments, ten each (answers event bodies by id, and
    the plan). A PaymentIntent's four steps: created; requires_action (every
    third payment: payment_failed, the customer then retrying); processing;
    succeeded. Two refunds, each created pending then updated, the second also
    as charge.refund.updated; and charge.refunded. The second refund takes the
    rest of the amount on odd payments, half of it on even ones, and fails
    (refund.failed) on every fifth payment.

    Half the payments are written here first, as the API leaves them (`user`'s,
    events carry our id); Stripe's events are the first we hear of the others,
    so their refund events fail until a PaymentIntent event has adopted them.
    """
    run = uuid.uuid4().hex[:8]
    start = int(time.time()) - 600
    plan, made, events = [], [], []
    for n in range(payments):
        amount = 4000 + 4 * n
        quarter = amount // 4
        intent_id = f"pi_storm_{run}_{n:05d}"
        payment = None
        if n % 2 == 0:
            payment = Payment(
                user=user, stripe_payment_intent_id=intent_id, amount=amount, currency="usd", idempotency_key=intent_id
            )
            made.append(payment)
        second_amount = amount - quarter if n % 2 else amount // 2
        second_status = Refund.Status.FAILED if n % 5 == 4 else Refund.Status.SUCCEEDED
        stormed = StormPayment(
            intent_id=intent_id,
            amount=amount,
            refunds=[
                (f"re_storm_{run}_{n:05d}_a", quarter, Refund.Status.SUCCEEDED),
                (f"re_storm_{run}_{n:05d}_b", second_amount, second_status),
            ],
            payment_id=payment.id if payment else None,
        )
        plan.append(stormed)
        intent = {} if payment else {"intent_id": intent_id, "amount": amount}
        second_step = "payment_intent.payment_failed" if n % 3 == 2 else "payment_intent.requires_action"
        for offset, event_type in enumerate(
            ("payment_intent.created", second_step, "payment_intent.processing", "payment_intent.succeeded")
        ):
            events.append(payment_intent_event(event_type, payment, created=start + offset, **intent))
        (first_id, first_amount, _), (second_id, _, _) = stormed.refunds

        def refund(refund_id, refund_amount, status, intent_id=intent_id):
            failure = "expired_or_canceled_card" if status == Refund.Status.FAILED else None
            return refund_object(
                intent_id=intent_id, refund_id=refund_id, amount=refund_amount, status=status, failure_reason=failure
            )

        second_update = "refund.failed" if second_status == Refund.Status.FAILED else "refund.updated"
        events += [
            stripe_event("refund.created", refund(first_id, first_amount, "pending"), created=start + 4),
            stripe_event("refund.updated", refund(first_id, first_amount, "succeeded"), created=start + 5),
            stripe_event("refund.created", refund(second_id, second_amount, "pending"), created=start + 5),
            stripe_event(second_update, refund(second_id, second_amount, second_status), created=start + 6),
            stripe_event("charge.refund.updated", refund(second_id, second_amount, second_status), created=start + 6),
            stripe_event(
                "charge.refunded",
                charge_object(intent_id=intent_id, amount=amount, amount_refunded=stormed.refunded),
                created=start + 7,
            ),
        ]
    Payment.objects.bulk_create(made)
    return {event["id"]: json.dumps(event) for event in events}, plan


@dataclass
class Delivery:
    """How a set of events was delivered: posts made, answers got, rounds of redelivery."""

    events: int = 0
    posts: int = 0
    answers: Counter = field(default_factory=Counter)
    redelivery_rounds: int = 0
    redelivered: int = 0
    # Events no delivery got a 2xx for, after the last round.
    undelivered: int = 0
    seconds: float = 0.0


def post_webhook(session: requests.Session, url: str, body: str) -> requests.Response:
    """POST one event to the server's endpoint as Stripe does: raw body, signed at sending time."""
    signature = stripe_gateway.webhook_sign(body, secret=TEST_WEBHOOK_SECRET, timestamp=int(time.time()))
    return session.post(
        url + "/webhooks/stripe/",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=REQUEST_TIMEOUT,
    )


def deliver(
    urls: list[str],
    bodies: dict[str, str],
    *,
    copies: int = 3,
    concurrency: int = 16,
    seed: int = 0,
    max_rounds: int = 20,
    during: Callable[[], None] | None = None,
) -> Delivery:
    """
    Deliver every event `copies` times, shuffled, spread over the servers, from
    `concurrency` threads (`during` runs beside this first round); then, as
    Stripe does, deliver again each event no copy of which got a 2xx answer,
    round after round, until every event has one or `max_rounds` have passed.
    """
    delivery = Delivery(events=len(bodies))
    queue = [event_id for event_id in bodies for _ in range(copies)]
    random.Random(seed).shuffle(queue)
    accepted: set[str] = set()
    started = time.perf_counter()
    for round_number in range(max_rounds + 1):
        if round_number:
            queue = [event_id for event_id in bodies if event_id not in accepted]
            if not queue:
                break
            delivery.redelivery_rounds += 1
            delivery.redelivered += len(queue)
        side = while_running(during if round_number == 0 else None)
        answers = send_concurrently(
            urls,
            queue,
            lambda session, url, event_id: post_webhook(session, url, bodies[event_id]),
            concurrency=concurrency,
        )
        if side is not None:
            side.join()
        delivery.posts += len(queue)
        delivery.answers.update(answers)
        accepted.update(event_id for event_id, answer in zip(queue, answers, strict=True) if answer == 200)
    delivery.seconds = time.perf_counter() - started
    delivery.undelivered = len(bodies) - len(accepted)
    return delivery


@dataclass
class StormCheck:
    """What the database holds after a storm, against what Stripe holds."""

    events: int = 0
    events_stored: int = 0
    events_failed: int = 0
    payments: int = 0
    payments_wrong: list[str] = field(default_factory=list)
    refunds_expected: int = 0
    refunds_recorded: int = 0
    refunds_wrong: list[str] = field(default_factory=list)
    invariant_violations: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return (
            self.events_stored == self.events
            and not self.events_failed
            and not self.payments_wrong
            and self.refunds_recorded == self.refunds_expected
            and not self.refunds_wrong
            and not self.invariant_violations
        )


def storm_check(bodies: dict[str, str], plan: list[StormPayment]) -> StormCheck:
    """Count the stored events, and compare every payment and refund with its final state at Stripe."""
    close_old_connections()
    check = StormCheck(events=len(bodies), payments=len(plan), refunds_expected=2 * len(plan))
    stored = WebhookEvent.objects.filter(stripe_event_id__in=list(bodies))
    check.events_stored = stored.count()
    check.events_failed = stored.filter(outcome=WebhookEvent.Outcome.FAILED).count()
    payments = {
        p.stripe_payment_intent_id: p
        for p in Payment.objects.filter(stripe_payment_intent_id__in=[s.intent_id for s in plan]).prefetch_related(
            "refunds"
        )
    }
    for expected in plan:
        payment = payments.get(expected.intent_id)
        if payment is None:
            check.payments_wrong.append(f"{expected.intent_id}: missing")
            continue
        if expected.payment_id is not None and payment.id != expected.payment_id:
            check.payments_wrong.append(f"{expected.intent_id}: adopted although the app made it")
        got = (payment.status, payment.refunded_amount)
        if got != (expected.status, expected.refunded):
            check.payments_wrong.append(
                f"{expected.intent_id}: {got} instead of {(expected.status, expected.refunded)}"
            )
        refunds = {r.stripe_refund_id: r for r in payment.refunds.all()}
        check.refunds_recorded += len(refunds)
        for refund_id, amount, status in expected.refunds:
            refund = refunds.get(refund_id)
            if refund is None or (refund.status, refund.amount) != (status, amount):
                check.refunds_wrong.append(f"{refund_id}: {refund and (refund.status, refund.amount)}")
        check.invariant_violations += _invariant_violations(payment)
    return check


def _invariant_violations(payment: Payment, *, at_stripe=None) -> list[str]:
    try:
        assert_refund_invariants(payment, at_stripe=at_stripe)
    except AssertionError as exc:
        return [f"payment {payment.id}: {exc}"]
    return []


# --- 2 and 3. Refunds through faults and crashes --------------------------------


def paid_payments(*, count: int, user, amount: int = 10_000) -> list[Payment]:
    """`count` payments of `user`'s, made through the payment service and paid at the local Stripe."""
    payments = []
    for _ in range(count):
        payment, _ = payment_create(user=user, idempotency_key=str(uuid.uuid4()), amount=amount, currency="usd")
        payments.append(pay_at_stripe(payment))
    return payments


@dataclass(frozen=True)
class RefundRequest:
    payment_id: uuid.UUID
    amount: int
    key: str


def refund_requests(payments: list[Payment], *, per_payment: int = 2, seed: int = 0) -> list[RefundRequest]:
    """`per_payment` partial refunds of each payment (together 80% of it), shuffled."""
    wanted = []
    for payment in payments:
        share = payment.amount * 8 // 10 // per_payment
        wanted += [RefundRequest(payment.id, share, str(uuid.uuid4())) for _ in range(per_payment)]
    random.Random(seed).shuffle(wanted)
    return wanted


@dataclass
class RefundRun:
    """How the refund requests were answered, and what the operator's commands did."""

    requests: int = 0
    answers: Counter = field(default_factory=Counter)
    # Requests sent again by the client with the same key because no definite answer came back.
    resent: int = 0
    resent_answers: Counter = field(default_factory=Counter)
    # The requests answered with no answer at all, or a 5xx.
    unanswered: list[RefundRequest] = field(default_factory=list)
    # Refunds left pending without Stripe's answer once the requests were over: the commands' work.
    pending_after_requests: int = 0
    # How often each fault of the local Stripe fired, by mode.
    faults_fired: Counter = field(default_factory=Counter)
    command_rounds: list[str] = field(default_factory=list)
    seconds: float = 0.0


def post_refund(session: requests.Session, url: str, wanted: RefundRequest, token: str) -> requests.Response:
    return session.post(
        f"{url}/api/payments/{wanted.payment_id}/refunds/",
        json={"amount": wanted.amount},
        headers={"Authorization": f"Token {token}", "Idempotency-Key": wanted.key},
        timeout=REQUEST_TIMEOUT,
    )


def request_refunds(
    urls: list[str],
    token: str,
    wanted: list[RefundRequest],
    *,
    concurrency: int = 8,
    during: Callable[[], None] | None = None,
) -> RefundRun:
    """POST every refund request once, spread over the servers (`during` runs beside them)."""
    run = RefundRun()
    started = time.perf_counter()
    side = while_running(during)
    answers = send_concurrently(
        urls, wanted, lambda session, url, item: post_refund(session, url, item, token), concurrency=concurrency
    )
    if side is not None:
        side.join()
    run.seconds = time.perf_counter() - started
    run.requests = len(wanted)
    run.answers.update(answers)
    run.unanswered = [
        item for item, answer in zip(wanted, answers, strict=True) if answer == NO_ANSWER or answer >= 500
    ]
    close_old_connections()
    run.pending_after_requests = Refund.objects.filter(
        idempotency_key__in=[item.key for item in wanted], status=Refund.Status.PENDING, stripe_refund_id__isnull=True
    ).count()
    return run


def resend_unanswered(urls: list[str], token: str, run: RefundRun, *, concurrency: int = 8) -> None:
    """What the contract asks of a client that got no definite answer: send the same request with the same key."""
    answers = send_concurrently(
        urls, run.unanswered, lambda session, url, item: post_refund(session, url, item, token), concurrency=concurrency
    )
    run.resent += len(run.unanswered)
    run.resent_answers.update(answers)


def operator_commands(run: RefundRun, *, lease_seconds: int | None = None, servers: int = 1) -> bool:
    """
    `retry_refunds` then `reconcile_stripe`, in-process, as the operator runs them
    (a cron job), on each of `servers` servers at the same moment (one thread
    each). Answers whether no refund is left waiting for Stripe. With
    `lease_seconds`, a crashed request's lease is that long (the servers must
    have been started with the same REFUND_CREATE_LEASE_SECONDS).
    """
    close_old_connections()
    outputs = [io.StringIO() for _ in range(servers)]
    start = threading.Barrier(servers)

    def cron(out: io.StringIO) -> None:
        try:
            start.wait()
            try:
                call_command("retry_refunds", stdout=out)
            except CommandError as exc:
                out.write(f"{exc}\n")
            call_command("reconcile_stripe", stdout=out, stderr=io.StringIO())
        finally:
            if servers > 1:
                connection.close()

    overrides = {} if lease_seconds is None else {"REFUND_CREATE_LEASE_SECONDS": lease_seconds}
    with override_settings(**overrides):
        if servers == 1:
            cron(outputs[0])
        else:
            crons = [threading.Thread(target=cron, args=(out,)) for out in outputs]
            for thread in crons:
                thread.start()
            for thread in crons:
                thread.join()
    for number, out in enumerate(outputs, 1):
        lines = [line for line in out.getvalue().splitlines() if line.startswith(("retry_refunds:", "refunds:"))]
        run.command_rounds.append((f"server {number}: " if servers > 1 else "") + "; ".join(lines))
    return not Refund.objects.filter(status=Refund.Status.PENDING, stripe_refund_id__isnull=True).exists()


def operator_commands_until_done(run: RefundRun, *, rounds: int = 5, lease_seconds: int | None = None) -> None:
    for _ in range(rounds):
        if operator_commands(run, lease_seconds=lease_seconds):
            return
        # A refund Stripe is still working on (a hung call) answers 409 to its retry until it is done.
        time.sleep(1)


@dataclass
class RefundCheck:
    """Every refund asked for, here and at Stripe."""

    requested: int = 0
    recorded: int = 0
    succeeded: int = 0
    at_stripe: int = 0
    # Refunds Stripe made beyond one per refund asked for.
    doubled: int = 0
    # Refunds asked for that are not succeeded here, or not made at Stripe.
    lost: int = 0
    # Refunds at Stripe no refund here records.
    unrecorded: int = 0
    invariant_violations: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.recorded == self.succeeded == self.at_stripe == self.requested and not (
            self.doubled or self.lost or self.unrecorded or self.invariant_violations
        )


def refund_check(wanted: list[RefundRequest], *, fake_stripe) -> RefundCheck:
    """Compare every refund asked for with our books and with the local Stripe's refunds."""
    close_old_connections()
    check = RefundCheck(requested=len(wanted))
    ours = {r.idempotency_key: r for r in Refund.objects.filter(idempotency_key__in=[w.key for w in wanted])}
    check.recorded = len(ours)
    check.succeeded = sum(r.status == Refund.Status.SUCCEEDED for r in ours.values())
    made_for: Counter = Counter()
    recorded_ids = {r.stripe_refund_id for r in ours.values()}
    for payment in Payment.objects.filter(pk__in={w.payment_id for w in wanted}):
        at_stripe = fake_stripe.list("refunds", payment_intent=payment.stripe_payment_intent_id)
        check.at_stripe += len(at_stripe)
        made_for.update((r.get("metadata") or {}).get("refund_id") for r in at_stripe)
        check.unrecorded += sum(r["id"] not in recorded_ids for r in at_stripe)
        check.invariant_violations += _invariant_violations(payment, at_stripe=fake_stripe)
    check.doubled = sum(count - 1 for count in made_for.values() if count > 1)
    for item in wanted:
        refund = ours.get(item.key)
        if refund is None or refund.status != Refund.Status.SUCCEEDED or not made_for[str(refund.id)]:
            check.lost += 1
    return check


def stripe_faults(fake_stripe, *, rate: float, hang_seconds: float, seed: int = 0) -> None:
    """
    Make `rate` of every call to the local Stripe fail, in three equal parts: a
    500 (nothing done), a hang past the client's timeout (done late), the answer
    dropped after the work is done.
    """
    part = rate / 3
    # The rules are tried in order, each with its own roll: scaled so each fires on `part` of all calls.
    fake_stripe.add_fault("error500", probability=part, seed=seed)
    fake_stripe.add_fault("hang", probability=part / (1 - part), seconds=hang_seconds, seed=seed + 1)
    fake_stripe.add_fault("drop", probability=part / (1 - 2 * part), seed=seed + 2)


def refunds_through_faults(
    urls: list[str],
    token: str,
    wanted: list[RefundRequest],
    *,
    fake_stripe,
    rate: float,
    hang_seconds: float,
    concurrency: int = 8,
) -> RefundRun:
    """
    Item 2: every refund request while `rate` of Stripe calls fail; then the
    operator's commands once with the faults still on (from `len(urls)` servers
    at once, as a cron on each would run them), and again once Stripe has
    recovered, until no refund is left waiting.
    """
    stripe_faults(fake_stripe, rate=rate, hang_seconds=hang_seconds)
    run = request_refunds(urls, token, wanted, concurrency=concurrency)
    operator_commands(run, servers=len(urls))
    for rule in fake_stripe.faults():
        run.faults_fired[rule["mode"]] += rule["fired"]
    fake_stripe.clear_faults()
    operator_commands_until_done(run)
    return run


def worker_kills(site, *, kills: int, every: float, killed: list[int]) -> Callable[[], None]:
    """A crash for `refunds_through_crash`: SIGKILL a worker of `site` `kills` times, every `every` seconds."""

    def kill() -> None:
        for _ in range(kills):
            time.sleep(every)
            killed.append(site.kill_worker())

    return kill


def refunds_through_crash(
    urls: list[str],
    token: str,
    wanted: list[RefundRequest],
    *,
    crash: Callable[[], None],
    fake_stripe,
    lease_seconds: int,
    concurrency: int = 8,
) -> RefundRun:
    """
    Item 3: refunds while `crash` runs beside them (workers SIGKILLed, the
    database restarted). Stripe is made slow (half its refund calls take a
    second) so that requests are caught between asking Stripe and recording its
    answer.

    The recovery is the documented procedure: once the cut requests' leases
    (`lease_seconds`) have run out, `retry_refunds` and `reconcile_stripe`; the
    clients that got no definite answer (none at all, or a 5xx) send their
    request again with the same key; the commands once more.
    """
    fake_stripe.add_fault("hang", method="POST", path="^/v1/refunds$", probability=0.5, seconds=1.0, seed=7)
    run = request_refunds(urls, token, wanted, concurrency=concurrency, during=crash)
    fake_stripe.clear_faults()
    time.sleep(lease_seconds + 0.5)
    operator_commands(run, lease_seconds=lease_seconds)
    resend_unanswered(urls, token, run, concurrency=concurrency)
    operator_commands_until_done(run, lease_seconds=lease_seconds)
    return run


def server_exceptions(sites) -> Counter:
    """The exceptions the servers' logs show tracebacks of, by class: the 500s, explained."""
    found: Counter = Counter()
    for site in sites:
        in_traceback = False
        for line in site.log_text().splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                if not line.startswith(("During handling", "The above exception")):
                    found[line.split(":", 1)[0].rsplit(".", 1)[-1]] += 1
                    in_traceback = False
    return found


def summary(counter: Iterable) -> str:
    """`200: 30, no answer: 2` for a Counter of answers."""
    return ", ".join(f"{key}: {count}" for key, count in sorted(Counter(counter).items(), key=lambda kv: str(kv[0])))
