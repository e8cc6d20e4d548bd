"""
What every proof scenario shares: sending many requests at once, running a fault
beside them, checking a payment's books, and summing up the servers' logs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import requests

from payments.models import Payment
from refunds.tests.invariants import assert_refund_invariants

NO_ANSWER = "no answer"
# What a crashed request's refund lease lasts on the tests' servers (60 s in production).
SITE_SERVERS_LEASE_SECONDS = 3
REQUEST_TIMEOUT = 30


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


def invariant_violations(payment: Payment, *, at_stripe=None) -> list[str]:
    """The refund invariant `payment` breaks (also against the local Stripe's refunds with `at_stripe`), or []."""
    try:
        assert_refund_invariants(payment, at_stripe=at_stripe)
    except AssertionError as exc:
        return [f"payment {payment.id}: {exc}"]
    return []


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
