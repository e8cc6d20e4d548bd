"""
A storefront in trouble loses nothing: its receiver answers 500, then hangs past
the site's timeout, then refuses connections, then recovers; the real workers
retry throughout, and every event arrives (at least once, always under the same
webhook-id); the feed lists each event once.
"""

import pytest

from notifications.models import Delivery, DeliveryAttempt, Event
from notifications.tests.factories import EndpointFactory
from payments.tests.factories import api_client_for
from refunds.tests.factories import PaidPaymentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_password_hashing")]

WAIT_SECONDS = 30


def test_every_event_arrives_through_errors_hangs_and_refused_connections(owner, job_workers, notification_receiver):
    endpoint = EndpointFactory(owner=owner, url=notification_receiver.url_for("shop"))
    notification_receiver.trust("shop", endpoint.secret)
    wait_for = notification_receiver.wait_for

    def attempts_failing_with(error: str) -> int:
        return DeliveryAttempt.objects.filter(delivery__endpoint=endpoint, error=error).count()

    notification_receiver.answer(500)
    for _ in range(3):
        PaidPaymentFactory(user=owner)
    wait_for(lambda: len(notification_receiver.received("shop")) >= 6, timeout=WAIT_SECONDS, what="answers of 500")

    notification_receiver.hang()
    PaidPaymentFactory(user=owner)
    wait_for(lambda: attempts_failing_with("No answer within 2 s.") >= 2, timeout=WAIT_SECONDS, what="timeouts")

    notification_receiver.refuse()
    PaidPaymentFactory(user=owner)
    wait_for(lambda: attempts_failing_with("Connection refused.") >= 3, timeout=WAIT_SECONDS, what="refusals")
    assert not Delivery.objects.filter(state=Delivery.State.DELIVERED).exists()

    notification_receiver.answer(200)
    notification_receiver.listen()
    events = {event.public_id: event for event in Event.objects.filter(user=owner)}
    assert len(events) == 5
    wait_for(
        lambda: {r.webhook_id for r in notification_receiver.acknowledged("shop")} == set(events),
        timeout=WAIT_SECONDS,
        what="every event, once the receiver is back",
    )

    assert notification_receiver.unverified() == []
    # Every request about an event carried that event's id as its webhook-id, whatever attempt it was.
    for received in notification_receiver.received("shop"):
        assert received.webhook_id == received.body["id"]
        assert events[received.webhook_id].sequence == received.sequence
    wait_for(
        lambda: set(Delivery.objects.values_list("state", flat=True)) == {Delivery.State.DELIVERED},
        timeout=WAIT_SECONDS,
        what="every delivery recorded as delivered",
    )
    assert all(delivery.attempts >= 2 for delivery in Delivery.objects.all())
    feed = api_client_for(owner).get("/api/events/").json()["results"]
    assert sorted(item["id"] for item in feed) == sorted(events)
    assert [item["sequence"] for item in feed] == sorted(event.sequence for event in events.values())
