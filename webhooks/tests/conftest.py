"""The webhooks tests' own fixture: our clock set wrong on purpose, Stripe's left alone."""

from datetime import timedelta

import pytest
from django.utils import timezone

# How far our clock is set off: more than any delay between an answer and an event.
SKEW_SECONDS = 30


@pytest.fixture(params=[SKEW_SECONDS, -SKEW_SECONDS], ids=["our clock ahead", "our clock behind"])
def skewed_clock(request, monkeypatch) -> int:
    """
    `django.utils.timezone.now` (our clock: what every service reads) runs
    SKEW_SECONDS ahead of, or behind, the real time; the local Stripe and the
    events' `created` (Stripe's clock) keep the real time. Answers the offset in seconds.
    """
    real_now = timezone.now
    offset = timedelta(seconds=request.param)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)
    return request.param
