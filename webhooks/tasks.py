"""
The webhooks app's background jobs (procrastinate; a worker is `python manage.py
procrastinate worker`):

- `apply_event`: apply one stored Stripe event, queued by the webhook view in the
  transaction that stored it, under a lock per PaymentIntent;
- `reconcile_with_stripe` (hourly) and `reread_overdue_payments` (every few
  minutes): the fix for Stripe's events that never came, the same code as
  `manage.py reconcile_stripe`. Their schedules are settings.JOBS_SCHEDULE's.
"""

from __future__ import annotations

import io
import logging

from django.conf import settings
from django.core.management import call_command
from procrastinate import BaseRetryStrategy, JobContext, RetryDecision
from procrastinate.contrib.django import app

from webhooks.services import webhook_event_apply

logger = logging.getLogger(__name__)

WEBHOOKS_QUEUE = "webhooks"
MAINTENANCE_QUEUE = "maintenance"
# A retried attempt steps back behind the fresh events of its PaymentIntent: procrastinate
# runs the jobs of one lock in priority order, so a failing event, waiting for its next
# attempt, never holds up the others of its payment.
RETRY_PRIORITY = -1


class StripeLikeBackoff(BaseRetryStrategy):
    """
    Retry a failed apply after WEBHOOK_RETRY_BASE_SECONDS ** n seconds (2, 4, 8...),
    WEBHOOK_APPLY_RETRIES times: about three days by default, as Stripe retries a
    delivery. Settings are read at each decision, never at import.
    """

    def get_retry_decision(self, *, exception: BaseException, job) -> RetryDecision | None:
        if job.attempts >= settings.WEBHOOK_APPLY_RETRIES:
            return None
        wait = settings.WEBHOOK_RETRY_BASE_SECONDS ** (job.attempts + 1)
        return RetryDecision(retry_in={"seconds": wait}, priority=RETRY_PRIORITY)


@app.task(name="webhooks.apply_event", queue=WEBHOOKS_QUEUE, pass_context=True, retry=StripeLikeBackoff())
def apply_event(context: JobContext, *, event_id: int) -> str:
    """
    Apply stored event `event_id` (webhooks.services.webhook_event_apply); answers
    its outcome. Its last attempt (after WEBHOOK_APPLY_RETRIES retries) leaves it
    `failed`; an earlier failed attempt raises ApplyFailed, and procrastinate
    runs the job again later. Safe to run twice: an event applied once is left alone.
    """
    final = context.job.attempts >= settings.WEBHOOK_APPLY_RETRIES
    event = webhook_event_apply(event_id=event_id, final_attempt=final)
    # An event deleted since (it never is in production) leaves nothing to do.
    return event.outcome if event is not None else "gone"


@app.task(
    name="webhooks.reconcile_with_stripe",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="webhooks.reconcile_with_stripe",
    lock="webhooks.reconcile_with_stripe",
)
def reconcile_with_stripe(timestamp: int) -> str:
    """
    `reconcile_stripe --since RECONCILE_SINCE_HOURS`: every non-final payment,
    pending refund and refundable payment of that window read from Stripe and
    brought up to date. One run at a time (lock), never one waiting behind
    another (queueing lock). Answers the command's summary, also logged.
    """
    return _run_command("reconcile_stripe", "--since", str(settings.RECONCILE_SINCE_HOURS))


@app.task(
    name="webhooks.reread_overdue_payments",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="webhooks.reread_overdue_payments",
    lock="webhooks.reread_overdue_payments",
)
def reread_overdue_payments(timestamp: int) -> str:
    """
    `reconcile_stripe --overdue PAYMENT_EVENTS_OVERDUE_MINUTES --since
    RECONCILE_SINCE_HOURS`: the payments whose events are late (not final, not
    changed for that long) read from Stripe. Answers the command's summary.
    """
    return _run_command(
        "reconcile_stripe",
        "--overdue",
        str(settings.PAYMENT_EVENTS_OVERDUE_MINUTES),
        "--since",
        str(settings.RECONCILE_SINCE_HOURS),
    )


def _run_command(name: str, *args: str) -> str:
    """Run a management command as an operator would; its summary goes to the log, its problems as warnings."""
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    for line in err.getvalue().splitlines():
        logger.warning("%s: %s", name, line)
    summary = "; ".join(line for line in out.getvalue().splitlines() if not line.startswith("…"))
    logger.info("%s: %s", name, summary)
    return summary
