"""
Item 1 of issue #7, small: a storm of signed events, every one delivered three
times in a shuffled order, posted concurrently to two real servers on one
database and applied by two real workers. Each event is stored and applied once,
every payment and refund ends in the state Stripe holds (half the payments are
first heard of through a refund event: the workers adopt them from the local
Stripe), and the invariants hold. The full size is `python -m
benchmarks.webhook_storm` (BENCHMARKS.md).
"""

import pytest

from devkit.scenarios import STORM_EVENTS_PER_PAYMENT, deliver, storm_check, storm_prepare, wait_for_workers


@pytest.mark.django_db(transaction=True)
def test_a_shuffled_storm_with_every_event_three_times_converges_on_two_servers(
    site_servers, job_workers, fake_stripe, owner
):
    bodies, plan = storm_prepare(payments=30, user=owner)
    assert len(bodies) == 30 * STORM_EVENTS_PER_PAYMENT

    delivery = deliver([site.url for site in site_servers], bodies, copies=3, concurrency=12, seed=1)
    wait_for_workers(bodies, timeout=60)

    assert delivery.undelivered == 0, delivery
    assert delivery.posts >= 3 * len(bodies)
    # Every answer was a 200: the servers only store and queue.
    assert set(delivery.answers) == {200}
    check = storm_check(bodies, plan)
    assert check.events_stored == 300
    assert check.events_pending == 0
    assert check.events_failed == 0
    assert check.payments_wrong == []
    assert check.refunds_recorded == check.refunds_expected == 60
    assert check.refunds_wrong == []
    assert check.invariant_violations == []
