"""
The workers are woken (PostgreSQL NOTIFY, which procrastinate's workers LISTEN
to) as soon as a webhook's event and job are committed, by a notification sent
after the commit rather than inside it (migration 0003: a NOTIFY inside the
commit held every other webhook's commit back). Other jobs notify as before.
"""

import json

import psycopg
import pytest
from django.db import connection, transaction
from django.test import Client
from procrastinate.contrib.django import app

from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_reprocess
from webhooks.tests.factories import payment_intent_event, post_event

ANY_QUEUE = "procrastinate_any_queue_v1"


@pytest.fixture
def listener(transactional_db):
    """A connection LISTENing where idle workers do; `received()` answers what arrived since."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute(f"LISTEN {ANY_QUEUE}")

        def received(*, expected: int = 1, timeout: float = 5.0) -> list[dict]:
            """What arrives, up to `expected` notifications or `timeout` seconds (expected=0: all of timeout)."""
            notes = other.notifies(timeout=timeout, stop_after=expected or None)
            return [json.loads(note.payload) for note in notes]

        yield received
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs")


def job_ids(task_name: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", [task_name])
        return [job_id for (job_id,) in cursor.fetchall()]


def test_a_stored_webhook_wakes_the_workers_once_committed(listener):
    assert post_event(Client(), payment_intent_event("payment_intent.succeeded"), apply=False).status_code == 200

    assert listener() == [{"type": "job_inserted", "job_id": job_ids("webhooks.apply_event")[0]}]


def test_a_duplicate_wakes_no_one(listener):
    event = payment_intent_event("payment_intent.succeeded")
    post_event(Client(), event, apply=False)
    listener()

    post_event(Client(), event, apply=False)

    assert listener(expected=0, timeout=0.5) == []


def test_an_apply_job_queued_in_a_transaction_wakes_the_workers_only_after_its_commit(listener, settings):
    settings.WEBHOOK_APPLY_RETRIES = 0
    post_event(Client(), payment_intent_event("payment_intent.succeeded", status="some_future_status"))
    failed = WebhookEvent.objects.get()
    listener()

    with transaction.atomic():
        webhook_event_reprocess(event=failed)
        assert listener(expected=0, timeout=0.5) == []

    assert listener() == [{"type": "job_inserted", "job_id": job_ids("webhooks.apply_event")[0]}]


def test_other_jobs_still_notify_through_procrastinates_trigger(listener):
    app.configure_task("refunds.retry_refunds").defer(timestamp=0)

    assert listener() == [{"type": "job_inserted", "job_id": job_ids("refunds.retry_refunds")[0]}]


def test_inserting_an_apply_job_notifies_no_one_inside_its_transaction(listener):
    """procrastinate's trigger skips the apply jobs: their wake-up is the one sent after the commit."""
    from webhooks.tasks import apply_event

    apply_event.configure(lock="pi_silent").defer(event_id=0)

    assert listener(expected=0, timeout=0.5) == []
    assert len(job_ids("webhooks.apply_event")) == 1
