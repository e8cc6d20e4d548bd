"""
Two workers applying a storm of shuffled, duplicated webhooks (devkit/scenarios/
storm.py) posted to two servers; each worker SIGKILLed once and PostgreSQL
restarted in the middle. Every event is applied once and every payment ends in
Stripe's final state. The scenario needs a PostgreSQL cluster it may restart and
a Django set up on it, so it runs in a process of its own (devkit/enginecrash.py);
the full size is `python -m benchmarks.crashes --scenario worker-storm`.
"""

import json
import subprocess
import sys

from devkit.processes import PROJECT_ROOT


def test_workers_killed_and_the_database_restarted_mid_storm_lose_nothing_and_apply_nothing_twice():
    finished = subprocess.run(
        [sys.executable, "-m", "devkit.enginecrash", "--payments", "12", "--gunicorn-workers", "1", "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert finished.stdout.strip(), finished.stderr[-3000:]
    run = json.loads(finished.stdout.strip().splitlines()[-1])
    check = run["check"]

    # The crashes happened, in the middle of it.
    assert run["workers_killed"] == 2 and run["worker_restarts"] >= 2
    assert run["database_restarts"] == 1
    # Stripe's redeliveries got every event stored (what the restart cut was answered 500, then sent again).
    assert run["undelivered"] == 0
    assert check["events_stored"] == check["events"] == 120
    # Every event applied: none left pending, none failed.
    assert (check["events_pending"], check["events_failed"]) == (0, 0)
    # Once: no refund recorded twice, none missing; every payment and refund as Stripe holds it.
    assert check["refunds_recorded"] == check["refunds_expected"] == 24
    assert check["payments_wrong"] == [] and check["refunds_wrong"] == []
    assert check["invariant_violations"] == []
    assert run["consistent"] and finished.returncode == 0
