"""
The refunds app's background job (procrastinate): `retry_refunds` every few minutes
(settings.JOBS_SCHEDULE), the same code as `manage.py retry_refunds`, so no cron is needed.
"""

from __future__ import annotations

import io
import logging

from django.core.management import CommandError, call_command
from procrastinate.contrib.django import app

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
