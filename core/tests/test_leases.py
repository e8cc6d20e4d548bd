"""One lease rule: a lease is live for `seconds` after it was taken, in Python and in the database alike."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from core.leases import lease_expired_before, lease_is_live, lease_not_live
from refunds.models import Refund
from refunds.tests.factories import RefundFactory

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_no_lease_is_not_live():
    assert not lease_is_live(None, seconds=60, now=NOW)


def test_a_lease_is_live_until_its_seconds_have_run():
    assert lease_is_live(NOW, seconds=60, now=NOW)
    assert lease_is_live(NOW - timedelta(seconds=59, microseconds=999_999), seconds=60, now=NOW)


def test_a_lease_taken_exactly_its_seconds_ago_has_run_out():
    assert not lease_is_live(NOW - timedelta(seconds=60), seconds=60, now=NOW)
    assert not lease_is_live(NOW - timedelta(minutes=5), seconds=60, now=NOW)


def test_the_length_is_the_callers():
    taken = NOW - timedelta(seconds=3)

    assert lease_is_live(taken, seconds=10, now=NOW)
    assert not lease_is_live(taken, seconds=2, now=NOW)


def test_expired_before_is_now_less_the_seconds():
    assert lease_expired_before(60, NOW) == NOW - timedelta(seconds=60)
    assert lease_expired_before(0.5, NOW) == NOW - timedelta(milliseconds=500)


@pytest.mark.django_db
def test_the_database_condition_agrees_with_lease_is_live():
    """Rows with no lease, or one at or past its end, match; a live one does not."""
    now = timezone.now()
    started = {
        "none": None,
        "fresh": now - timedelta(seconds=1),
        "boundary": now - timedelta(seconds=60),
        "stale": now - timedelta(minutes=5),
    }
    refunds = {name: RefundFactory(stripe_call_started_at=at) for name, at in started.items()}

    matched = set(
        Refund.objects.filter(lease_not_live("stripe_call_started_at", seconds=60, now=now)).values_list(
            "pk", flat=True
        )
    )

    assert matched == {r.pk for name, r in refunds.items() if not lease_is_live(started[name], seconds=60, now=now)}
    assert matched == {refunds["none"].pk, refunds["boundary"].pk, refunds["stale"].pk}
