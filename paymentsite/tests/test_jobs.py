"""
The background engine: jobs live in the site's PostgreSQL (procrastinate), a
real `manage.py procrastinate worker` runs them, and the periodic ones are
scheduled from settings, not from cron.
"""

import time

import pytest
from django.db import connection
from procrastinate.contrib.django import app

from paymentsite.tasks import SCHEDULED_TASKS

WAIT_SECONDS = 20


def job_statuses() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM procrastinate_jobs ORDER BY id")
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
