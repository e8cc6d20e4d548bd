"""
The notifications app's background job (procrastinate): one attempt at one
delivery. Queued by notifications.services in the transaction that made the
delivery (or scheduled its retry), so a delivery never waits without its job.
"""

from __future__ import annotations

import logging

from procrastinate.contrib.django import app

from notifications.services import DELIVER_TASK, QUEUE, delivery_attempt

logger = logging.getLogger(__name__)


@app.task(name=DELIVER_TASK, queue=QUEUE)
def deliver(delivery_id: int, due: str) -> str:
    """
    Send delivery `delivery_id` for its attempt due at `due` (an ISO datetime),
    if that is still the attempt it waits for; a later attempt is queued by the
    attempt itself, so this job never fails for a storefront's failure.
    Answers what happened, also logged (never the body or the secret).
    """
    outcome = delivery_attempt(delivery_id=delivery_id, due=due)
    logger.info("Delivery %s: %s", delivery_id, outcome)
    return outcome
