"""
Items 2 and 3 of issue #7, small: refunds sent to two real servers on one
database while the local Stripe fails, and while a server's workers are
SIGKILLed in the middle of them. After the operator's commands (and, for the
requests that got no answer, the client sending them again with the same key),
no refund is made twice at Stripe, none is lost, and the invariants hold. The
full sizes are `python -m benchmarks.refund_faults` and `python -m
benchmarks.crashes` (BENCHMARKS.md).
"""

import pytest
from rest_framework.authtoken.models import Token

from devkit.scenarios import (
    NO_ANSWER,
    SITE_SERVERS_LEASE_SECONDS,
    paid_payments,
    refund_check,
    refund_requests,
    refunds_through_crash,
    refunds_through_faults,
    worker_kills,
)


@pytest.mark.django_db(transaction=True)
def test_refunds_while_30_percent_of_stripe_calls_fail_are_each_made_once(site_servers, owner, staff, fake_stripe):
    wanted = refund_requests(paid_payments(count=15, user=owner), per_payment=2, seed=2)
    token = Token.objects.create(user=staff).key

    run = refunds_through_faults(
        [site.url for site in site_servers], token, wanted, fake_stripe=fake_stripe, rate=0.3, hang_seconds=3.5
    )

    # The faults really reached the requests: some were left to the commands.
    assert run.pending_after_requests > 0, run
    check = refund_check(wanted, fake_stripe=fake_stripe)
    assert check.requested == check.recorded == check.succeeded == check.at_stripe == 30
    assert check.doubled == 0
    assert check.lost == 0
    assert check.unrecorded == 0
    assert check.invariant_violations == []


@pytest.mark.django_db(transaction=True)
def test_refunds_survive_workers_killed_in_the_middle_of_them(site_servers, owner, staff, fake_stripe):
    wanted = refund_requests(paid_payments(count=10, user=owner), per_payment=2, seed=3)
    token = Token.objects.create(user=staff).key
    site = site_servers[0]
    killed = []

    run = refunds_through_crash(
        [site.url],
        token,
        wanted,
        crash=worker_kills(site, kills=2, every=0.8, killed=killed),
        fake_stripe=fake_stripe,
        lease_seconds=SITE_SERVERS_LEASE_SECONDS,
        concurrency=4,
    )

    assert len(killed) == 2
    # Workers died between writing a refund and recording Stripe's answer.
    assert run.answers[NO_ANSWER] > 0 and run.pending_after_requests > 0, run
    check = refund_check(wanted, fake_stripe=fake_stripe)
    assert check.requested == check.recorded == check.succeeded == check.at_stripe == 20
    assert check.doubled == 0
    assert check.lost == 0
    assert check.unrecorded == 0
    assert check.invariant_violations == []
