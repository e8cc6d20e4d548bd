"""
Scenarios 2 and 3, refunds through trouble: many partial refunds asked of several
servers at once while the local Stripe fails part of its calls (500, hang, answer
lost), or while workers are SIGKILLed and the database restarts; then the
operator's commands, and every refund compared with our books and with Stripe's.
"""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection
from django.test import override_settings

from devkit.scenarios.common import NO_ANSWER, REQUEST_TIMEOUT, invariant_violations, send_concurrently, while_running
from payments.models import Payment
from payments.services import payment_create
from refunds.models import Refund
from refunds.tests.factories import pay_at_stripe


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
        check.invariant_violations += invariant_violations(payment, at_stripe=fake_stripe)
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
