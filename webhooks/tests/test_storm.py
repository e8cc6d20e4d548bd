"""
Item 1 of issue #7, small: a storm of signed events, every one delivered three
times in a shuffled order, posted concurrently to two real servers on one
database. Each event is stored and applied once, every payment and refund ends
in the state Stripe holds, and the invariants hold. The full size is
`python -m benchmarks.webhook_storm` (BENCHMARKS.md).
"""

import pytest

from devkit.scenarios import STORM_EVENTS_PER_PAYMENT, deliver, storm_check, storm_prepare


@pytest.mark.django_db(transaction=True)
def test_a_shuffled_storm_with_every_event_three_times_converges_on_two_servers(site_servers, owner):
    bodies, plan = storm_prepare(payments=30, user=owner)
    assert len(bodies) == 30 * STORM_EVENTS_PER_PAYMENT

    delivery = deliver([site.url for site in site_servers], bodies, copies=3, concurrency=12, seed=1)

    assert delivery.undelivered == 0, delivery
    assert delivery.posts >= 3 * len(bodies)
    check = storm_check(bodies, plan)
    assert check.events_stored == 300
    assert check.events_failed == 0
    assert check.payments_wrong == []
    assert check.refunds_recorded == check.refunds_expected == 60
    assert check.refunds_wrong == []
    assert check.invariant_violations == []
