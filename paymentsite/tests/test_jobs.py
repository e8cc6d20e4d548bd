"""
The background engine: jobs live in the site's PostgreSQL (procrastinate), a
real `manage.py procrastinate worker` runs them, and the periodic ones are
scheduled from settings, not from cron.
"""

import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django import app
from procrastinate.exceptions import AlreadyEnqueued

from devkit.workers import FAST_RECOVERY_ENV, JobWorker
from payments.models import Payment
from payments.tests.factories import confirm_at_stripe, create_payment
from paymentsite.tasks import SCHEDULED_TASKS
from refunds.models import Refund
from refunds.services import refund_reserve
from webhooks.tasks import reconcile_with_stripe, reread_overdue_payments

WAIT_SECONDS = 20


def job_statuses(task_name: str = "refunds.retry_refunds") -> list[str]:
    """The statuses of the task's jobs in the queue (the workers' own upkeep jobs come and go beside them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", [task_name])
        return [status for (status,) in cursor.fetchall()]


def test_every_periodic_job_is_scheduled_from_settings(settings):
    scheduled = {(task.task.name, task.cron) for task in app.periodic_registry.periodic_tasks.values()}

    assert scheduled == {(SCHEDULED_TASKS[key], settings.JOBS_SCHEDULE[key]) for key in SCHEDULED_TASKS}


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_job_queued_by_the_site(job_workers):
    app.configure_task("refunds.retry_refunds").defer(timestamp=0)
    assert job_statuses() == ["todo"]

    deadline = time.monotonic() + WAIT_SECONDS
    while job_statuses() and time.monotonic() < deadline:
        time.sleep(0.1)

    # A job that succeeded is deleted: its record is the rows it changed.
    assert job_statuses() == []


def test_a_periodic_job_never_waits_twice_in_the_queue(transactional_db):
    """Its queueing lock: many workers' schedulers, or a slow run, never pile it up."""
    app.configure_task("refunds.retry_refunds").defer(timestamp=1)

    with pytest.raises(AlreadyEnqueued):
        app.configure_task("refunds.retry_refunds").defer(timestamp=2)

    assert job_statuses() == ["todo"]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs")


@pytest.mark.django_db(transaction=True)
def test_refunds_left_without_stripes_answer_are_sent_on_the_workers_schedule_once(staff, paid_payment, fake_stripe):
    """
    No cron: two workers both schedule retry_refunds every second; each tick is
    run once, by one of them, and the refund a crashed request left behind is
    made at Stripe once.
    """
    payment = paid_payment(amount=10_000)
    reserved, _ = refund_reserve(payment=payment, amount=2500, created_by=staff, idempotency_key="crashed")
    Refund.objects.filter(pk=reserved.pk).update(stripe_call_started_at=timezone.now() - timedelta(minutes=5))
    options = {
        "database_name": connection.settings_dict["NAME"],
        "stripe_api_base": fake_stripe.api_base,
        "extra_env": {**FAST_RECOVERY_ENV, "SCHEDULE_RETRY_REFUNDS": "* * * * * */1"},
        "wait": False,
    }
    try:
        with JobWorker.start(**options) as first, JobWorker.start(**options) as second:
            first.wait_until_ready()
            second.wait_until_ready()
            deadline = time.monotonic() + WAIT_SECONDS
            while len(retry_refunds_runs(first, second)) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            runs = retry_refunds_runs(first, second)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_jobs")

    assert len(runs) >= 4
    # One run per tick, whichever worker took it.
    assert len(runs) == len(set(runs))
    reserved.refresh_from_db()
    assert reserved.status == Refund.Status.SUCCEEDED
    assert len(fake_stripe.list("refunds")) == 1


def retry_refunds_runs(*workers) -> list[str]:
    """The ticks (timestamps) of every retry_refunds job the workers started, from their logs."""
    return [tick for worker in workers for tick in RETRY_REFUNDS_STARTED.findall(worker.log_text())]


RETRY_REFUNDS_STARTED = re.compile(r"Starting job refunds\.retry_refunds\[\d+\]\(timestamp=(\d+)\)")


@pytest.fixture
def paid_without_news(owner_api, fake_stripe):
    """A payment paid at Stripe whose events never came, last changed an hour ago."""
    payment = create_payment(owner_api, "overdue-paid")
    assert confirm_at_stripe(payment)["status"] == "succeeded"
    Payment.objects.filter(pk=payment.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    return payment


@pytest.mark.django_db
def test_the_periodic_reread_brings_overdue_payments_to_stripes_state(paid_without_news, owner_api, settings):
    settings.PAYMENT_EVENTS_OVERDUE_MINUTES = 30
    recent = create_payment(owner_api, "recent-open")

    summary = reread_overdue_payments(timestamp=0)

    assert summary == "payments: 1 checked, 1 updated, 0 not brought up to date"
    paid_without_news.refresh_from_db()
    assert paid_without_news.status == Payment.Status.SUCCEEDED
    # Changed minutes ago: its events are not late yet.
    recent.refresh_from_db()
    assert recent.status == Payment.Status.REQUIRES_PAYMENT_METHOD


@pytest.mark.django_db
def test_the_hourly_reconcile_is_reconcile_stripe(paid_without_news, settings):
    settings.RECONCILE_SINCE_HOURS = 48

    summary = reconcile_with_stripe(timestamp=0)

    assert "payments: 1 checked, 1 updated, 0 not brought up to date" in summary
    paid_without_news.refresh_from_db()
    assert paid_without_news.status == Payment.Status.SUCCEEDED
