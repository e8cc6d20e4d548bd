"""
The refunds app's background jobs (procrastinate): `retry_refunds` every few minutes
(settings.JOBS_SCHEDULE), the same code as `manage.py retry_refunds`, so no cron is needed;
and `settle_released_refund`, queued when refunds made at Stripe take the amount of one of
ours still waiting for Stripe's answer.
"""

from __future__ import annotations

import io
import logging

from django.core.management import CommandError, call_command
from procrastinate import RetryStrategy
from procrastinate.contrib.django import app

from refunds.models import Refund

logger = logging.getLogger(__name__)


@app.task(
    name="refunds.retry_refunds",
    queue="maintenance",
    queueing_lock="refunds.retry_refunds",
    lock="refunds.retry_refunds",
)
def retry_refunds(timestamp: int) -> str:
    """
    Send again every refund left pending without Stripe's answer
    (`manage.py retry_refunds`). One run at a time (lock), none waiting behind
    another (queueing lock); a refund still unanswered is left for the next run,
    not retried as a failed job. Answers the command's summary, also logged.
    """
    out = io.StringIO()
    try:
        call_command("retry_refunds", stdout=out)
    except CommandError as exc:
        logger.warning("retry_refunds: %s", exc)
    summary = next((line for line in out.getvalue().splitlines() if line.startswith("retry_refunds:")), "")
    logger.info("%s", summary)
    return summary


@app.task(
    name="refunds.settle_released_refund",
    # Beside the events of its payment (the lock is its PaymentIntent's), so it runs as soon as they allow.
    queue="webhooks",
    retry=RetryStrategy(max_attempts=12, exponential_wait=2),
)
def settle_released_refund(*, refund_id: str) -> str:
    """
    Ask Stripe about a refund released because refunds made at Stripe took its
    amount, and settle it (refunds.services.refund_settle_released); queued in
    the transaction that released it. Retried with backoff while its own request
    may still reach Stripe or Stripe does not answer; `retry_refunds` picks up
    any still due. Answers the refund's status.
    """
    from refunds.services import refund_settle_released

    refund = Refund.objects.filter(pk=refund_id).first()
    if refund is None:
        return "gone"
    return refund_settle_released(refund=refund).status
