"""
The proof scenarios of issue #7, in one place for the tests (small sizes) and
the benchmarks (full sizes): a storm of webhooks (`storm`), refunds through
Stripe's faults and through crashes (a worker SIGKILLed in the middle of
refunds, PostgreSQL restarted in the middle of a storm) (`refund_faults`), each
against one or more real servers (`SiteServer`) on one database; what they
share is in `common`. Import the names from this package.

The code runs in a process where Django is set up on the database the servers
use (the test database under pytest, a fresh one in a benchmark) with
STRIPE_API_BASE on the local Stripe. It prepares rows, drives the servers over
HTTP as Stripe and a storefront would, runs the operator's commands in-process,
and counts what it finds. The counts are what the tests assert and the
benchmarks print; a scenario asserts nothing itself.

Development and tests only: events are built with the webhooks tests' factories.
"""

from devkit.scenarios.common import (
    NO_ANSWER,
    REQUEST_TIMEOUT,
    SITE_SERVERS_LEASE_SECONDS,
    send_concurrently,
    server_exceptions,
    summary,
    while_running,
)
from devkit.scenarios.refund_faults import (
    RefundCheck,
    RefundRequest,
    RefundRun,
    operator_commands,
    operator_commands_until_done,
    paid_payments,
    post_refund,
    refund_check,
    refund_requests,
    refunds_through_crash,
    refunds_through_faults,
    request_refunds,
    resend_unanswered,
    stripe_faults,
    worker_kills,
)
from devkit.scenarios.storm import (
    STORM_EVENTS_PER_PAYMENT,
    Delivery,
    StormCheck,
    StormPayment,
    deliver,
    post_webhook,
    storm_check,
    storm_prepare,
    wait_for_workers,
)

__all__ = [
    "NO_ANSWER",
    "REQUEST_TIMEOUT",
    "SITE_SERVERS_LEASE_SECONDS",
    "STORM_EVENTS_PER_PAYMENT",
    "Delivery",
    "RefundCheck",
    "RefundRequest",
    "RefundRun",
    "StormCheck",
    "StormPayment",
    "deliver",
    "operator_commands",
    "operator_commands_until_done",
    "paid_payments",
    "post_refund",
    "post_webhook",
    "refund_check",
    "refund_requests",
    "refunds_through_crash",
    "refunds_through_faults",
    "request_refunds",
    "resend_unanswered",
    "send_concurrently",
    "server_exceptions",
    "stripe_faults",
    "storm_check",
    "storm_prepare",
    "summary",
    "wait_for_workers",
    "while_running",
    "worker_kills",
]
