"""The same event delivered twice, or by several threads at once, is stored once and applied once."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import post_event, refund_object, stripe_event, wait_until_applied


@pytest.mark.django_db
def test_a_duplicate_answers_200_and_changes_nothing(client):
    payment = PaidPaymentFactory(amount=2000)
    event = stripe_event("refund.created", refund_object(intent_id=payment.stripe_payment_intent_id, amount=500))
    post_event(client, event)
    first = WebhookEvent.objects.get()

    response = post_event(client, event)

    assert response.status_code == 200
    assert response.json() == {"received": True}
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().processed_at == first.processed_at
    payment.refresh_from_db()
    assert payment.refunded_amount == 500


@pytest.mark.django_db
def test_an_event_id_seen_before_is_not_applied_again_even_with_another_payload(client):
    """Stripe's event ids are unique: a second body under the same id is a replay, not news."""
    payment = PaidPaymentFactory(amount=2000)
    event = stripe_event("refund.created", refund_object(intent_id=payment.stripe_payment_intent_id, amount=500))
    post_event(client, event)
    other = stripe_event(
        "refund.created", refund_object(intent_id=payment.stripe_payment_intent_id, amount=900), event_id=event["id"]
    )

    assert post_event(client, other).status_code == 200

    assert Refund.objects.count() == 1
    assert WebhookEvent.objects.get().payload == event


@pytest.mark.django_db(transaction=True)
def test_the_same_event_posted_from_several_threads_at_once_is_applied_once():
    """Real concurrent requests (each its own connection): one applies, the others find it stored."""
    payment = PaidPaymentFactory(amount=2000)
    # A dashboard refund: applying it twice would create two Refund rows.
    event = stripe_event("refund.created", refund_object(intent_id=payment.stripe_payment_intent_id, amount=500))
    body = json.dumps(event)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    statuses = []

    def deliver():
        try:
            barrier.wait()
            statuses.append(post_event(Client(), body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * threads_count
    # Each thread ran the queued jobs, as a worker would; a real worker of the session may have taken one.
    assert wait_until_applied()
    assert WebhookEvent.objects.count() == 1
    assert Refund.objects.count() == 1
    payment.refresh_from_db()
    assert payment.refunded_amount == 500


@pytest.mark.django_db(transaction=True)
def test_different_events_of_one_payment_at_once_all_apply():
    """Dashboard refunds posted and applied together (one at a time, by their lock): none is lost from the balance."""
    payment = PaidPaymentFactory(amount=2000)
    bodies = [
        json.dumps(
            stripe_event("refund.created", refund_object(intent_id=payment.stripe_payment_intent_id, amount=250))
        )
        for _ in range(6)
    ]
    barrier = threading.Barrier(len(bodies))
    statuses = []

    def deliver(body):
        try:
            barrier.wait()
            statuses.append(post_event(Client(), body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * len(bodies)
    assert wait_until_applied()
    assert Refund.objects.count() == len(bodies)
    payment.refresh_from_db()
    assert payment.refunded_amount == 1500
    assert payment.status == "partially_refunded"
