"""
core.jobs: a job queued by a job (in a worker, whose procrastinate app defers on a
pool of its own) is written in the caller's transaction all the same.
"""

import json

import pytest
from django.db import connection, transaction
from procrastinate.contrib.django import app

from core.jobs import job_defer_in_transaction


def jobs_of(task_name: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT args FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", [task_name])
        # Django's connection leaves JSON undecoded.
        return [json.loads(row[0]) for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_jobs_left")
@pytest.mark.parametrize(
    "task_name, arguments",
    [("refunds.settle_released_refund", {"refund_id": "r1"}), ("webhooks.apply_event", {"event_id": 1})],
)
def test_a_job_queued_in_a_worker_is_rolled_back_or_committed_with_its_transaction(task_name, arguments):
    task = app.tasks[task_name]
    with app.replace_connector(app.connector.get_worker_connector()), app.open():
        with pytest.raises(RuntimeError), transaction.atomic():
            job_defer_in_transaction(task.configure(lock="pi_rolled_back"), **arguments)
            raise RuntimeError("the change it was about failed")
        assert jobs_of(task_name) == []

        with transaction.atomic():
            job_id = job_defer_in_transaction(task.configure(lock="pi_committed"), **arguments)
        assert isinstance(job_id, int)
        assert jobs_of(task_name) == [arguments]
