"""/healthz: 200 while the database answers, with how far behind the background workers are."""

import pytest
from django.db import connection

from webhooks.tests.factories import payment_intent_event, post_event


def set_queued_ago(seconds: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_events SET at = now() - make_interval(secs => %s) WHERE type = 'deferred'", [seconds]
        )


@pytest.mark.django_db
def test_healthz_reports_how_long_the_oldest_job_has_waited(client):
    post_event(client, payment_intent_event("payment_intent.succeeded"), apply=False)
    set_queued_ago(90)

    response = client.get("/healthz")

    assert response.status_code == 200
    jobs = response.json()["jobs"]
    assert (jobs["pending"], jobs["failed"]) == (1, 0)
    assert 90 <= jobs["oldest_pending_seconds"] < 100


@pytest.mark.django_db
def test_with_no_job_waiting_the_lag_is_zero(client):
    response = client.get("/healthz")

    assert response.json()["jobs"] == {"pending": 0, "failed": 0, "oldest_pending_seconds": 0.0}


@pytest.mark.django_db
def test_a_retry_waiting_for_its_time_is_no_lag(client):
    """A failed attempt retried in an hour is pending, but no worker is late for it."""
    post_event(client, payment_intent_event("payment_intent.succeeded"), apply=False)
    set_queued_ago(3600)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET scheduled_at = now() + interval '1 hour'")

    jobs = client.get("/healthz").json()["jobs"]

    assert jobs["pending"] == 1
    assert jobs["oldest_pending_seconds"] == 0.0
