"""
The feed never skips an event: events commit in the order of their sequence,
because each takes the next one from a counter row locked until its
transaction ends. Tested with two real concurrent transactions.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from notifications.models import EventType
from notifications.services import event_record
from payments.tests.factories import PaymentFactory, api_client_for

WAIT_SECONDS = 10


def feed_sequences(client, after: int) -> list[int]:
    response = client.get(f"/api/events/?after={after}")
    assert response.status_code == 200, response.content
    return [item["sequence"] for item in response.json()["results"]]


def backend_is_waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_an_event_committing_late_is_not_skipped_by_a_reader_who_saw_a_later_one(owner):
    """
    T1 writes an event and stays open; T2 writes another and commits as soon as it
    can. A reader reads the feed while T1 is open, then reads on after the last
    sequence it saw: it must see both events, once each.
    """
    first_payment, second_payment = PaymentFactory(user=owner), PaymentFactory(user=owner)
    client = api_client_for(owner)
    first_written, release_first, second_done = threading.Event(), threading.Event(), threading.Event()
    second_pid = []
    errors = []

    def first():
        try:
            with transaction.atomic():
                event_record(event_type=EventType.PAYMENT_SUCCEEDED, payment=first_payment)
                first_written.set()
                release_first.wait(WAIT_SECONDS)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    def second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
            with transaction.atomic():
                event_record(event_type=EventType.PAYMENT_SUCCEEDED, payment=second_payment)
            second_done.set()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    first_thread = threading.Thread(target=first)
    first_thread.start()
    assert first_written.wait(WAIT_SECONDS)
    second_thread = threading.Thread(target=second)
    second_thread.start()
    # The second transaction either committed already or waits for the first: read the feed only then.
    deadline = time.monotonic() + WAIT_SECONDS
    while not second_done.is_set() and time.monotonic() < deadline:
        if second_pid and backend_is_waiting_on_a_lock(second_pid[0]):
            break
        time.sleep(0.02)
    seen = feed_sequences(client, after=0)

    release_first.set()
    first_thread.join(WAIT_SECONDS)
    second_thread.join(WAIT_SECONDS)
    assert errors == []
    seen += feed_sequences(client, after=max(seen, default=0))

    assert len(seen) == 2 and len(set(seen)) == 2
    assert seen == sorted(seen)
