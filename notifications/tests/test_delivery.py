"""
Sending: each delivery is signed per Standard Webhooks (the receiver verifies it
with the library), keeps its webhook-id on every attempt, is retried on the
schedule until a 2xx, then failed; no redirect is followed; an endpoint failing
for days is disabled. The jobs run here, in the test's transaction; the
receiver is a real HTTP server.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from devkit.workers import run_jobs_in_process
from notifications import services
from notifications.models import Delivery, DeliveryAttempt, Endpoint, Event, EventType, new_endpoint_secret
from notifications.tests.factories import EndpointFactory, queued_jobs
from payments.tests.factories import PaymentFactory
from refunds.tests.factories import PaidPaymentFactory


@pytest.fixture
def endpoint(owner, notification_receiver):
    endpoint = EndpointFactory(owner=owner, url=notification_receiver.url_for("shop"))
    notification_receiver.trust("shop", endpoint.secret)
    return endpoint


@pytest.fixture
def fast_retries(settings):
    """Every retry due at once, three of them: run_jobs_in_process then plays the whole schedule."""
    settings.NOTIFICATIONS_RETRY_SECONDS = [0, 0, 0]
    settings.NOTIFICATIONS_TIMEOUT = 1.0


def paid(owner):
    payment = PaidPaymentFactory(user=owner)
    return payment, Event.objects.get(payment=payment)


@pytest.mark.django_db
def test_a_delivery_is_signed_so_the_storefront_verifies_it_with_the_library(owner, endpoint, notification_receiver):
    payment, event = paid(owner)

    run_jobs_in_process()

    (received,) = notification_receiver.received("shop")
    assert received.verified and received.acknowledged
    assert received.webhook_id == event.public_id
    assert received.body["id"] == event.public_id
    assert (received.type, received.sequence) == ("payment.succeeded", event.sequence)
    assert received.body["data"]["payment"]["id"] == str(payment.id)
    assert received.body["updated_at"] == received.body["data"]["payment"]["updated_at"]
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.delivered, attempt.error) == (200, True, "")
    assert "ok" in attempt.response_excerpt


@pytest.mark.django_db
def test_a_notification_signed_with_another_secret_does_not_verify(owner, endpoint, notification_receiver):
    """The receiver's check can fail: with a secret that is not the endpoint's, it refuses every notification."""
    notification_receiver.trust("shop", new_endpoint_secret())
    paid(owner)

    run_jobs_in_process()

    (received,) = notification_receiver.received("shop")
    assert not received.verified
    assert Delivery.objects.get().last_status_code == 400


@pytest.mark.django_db
def test_after_a_failure_the_next_attempt_is_queued_for_the_schedules_first_wait(
    owner, endpoint, notification_receiver, settings
):
    settings.NOTIFICATIONS_RETRY_SECONDS = [5, 300]
    notification_receiver.answer(500)
    paid(owner)

    run_jobs_in_process()

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(seconds=5)
    (job,) = queued_jobs()
    assert job["scheduled_at"] == delivery.next_attempt_at
    assert job["args"] == {"delivery_id": delivery.pk, "due": delivery.next_attempt_at.isoformat()}


def test_the_default_schedule_retries_for_more_than_a_day(settings):
    assert sum(settings.NOTIFICATIONS_DEFAULT_RETRY_SECONDS) >= 24 * 3600


@pytest.mark.django_db
def test_a_delivery_failing_every_retry_is_failed_then_redelivered_by_hand_with_the_same_webhook_id(
    owner, endpoint, notification_receiver, fast_retries
):
    notification_receiver.answer(503)
    _, event = paid(owner)

    run_jobs_in_process()

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("failed", 4, "HTTP 503.")
    assert len(notification_receiver.received("shop")) == 4

    notification_receiver.answer(200)
    services.delivery_redeliver(delivery=delivery)
    run_jobs_in_process()

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 5)
    assert {r.webhook_id for r in notification_receiver.received("shop")} == {event.public_id}
    assert [r.answered for r in notification_receiver.received("shop")] == [503, 503, 503, 503, 200]


@pytest.mark.django_db
def test_everything_failed_for_an_endpoint_is_redelivered_at_once(owner, endpoint, notification_receiver, fast_retries):
    notification_receiver.answer(500)
    paid(owner)
    paid(owner)
    run_jobs_in_process()
    assert list(Delivery.objects.values_list("state", flat=True)) == ["failed", "failed"]

    notification_receiver.answer(204)
    assert services.endpoint_redeliver_failed(endpoint=endpoint) == 2
    run_jobs_in_process()

    assert list(Delivery.objects.values_list("state", flat=True)) == ["delivered", "delivered"]


@pytest.mark.django_db
def test_a_redirect_is_not_followed(owner, endpoint, notification_receiver, fast_retries):
    notification_receiver.trust("elsewhere", endpoint.secret)
    notification_receiver.answer(307, location=notification_receiver.url_for("elsewhere"))
    paid(owner)

    services.delivery_attempt(
        delivery_id=Delivery.objects.get().pk, due=Delivery.objects.get().next_attempt_at.isoformat()
    )

    assert notification_receiver.received("elsewhere") == []
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.delivered) == (307, False)
    assert "redirect" in attempt.error


@pytest.mark.django_db
def test_an_endpoint_that_does_not_answer_in_time_is_a_failed_attempt(owner, endpoint, notification_receiver, settings):
    settings.NOTIFICATIONS_TIMEOUT = 0.5
    notification_receiver.hang()
    paid(owner)

    run_jobs_in_process()

    attempt = DeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.delivered, attempt.error) == (None, False, "No answer within 0.5 s.")
    assert Delivery.objects.get().state == "pending"


@pytest.mark.django_db
def test_a_refused_connection_is_a_failed_attempt(owner, endpoint, notification_receiver):
    notification_receiver.refuse()
    paid(owner)

    run_jobs_in_process()

    attempt = DeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (None, "Connection refused.")


@pytest.mark.django_db
def test_an_endpoint_failing_for_days_is_disabled_and_its_deliveries_fail(
    owner, endpoint, notification_receiver, fast_retries
):
    notification_receiver.answer(500)
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=121))
    paid(owner)

    run_jobs_in_process()

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_for_failing
    assert "every delivery failed for 120 hours" in endpoint.disabled_reason
    delivery = Delivery.objects.get()
    # One attempt disabled it; the next finds it disabled.
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("failed", 1, "The endpoint is disabled.")
    paid(owner)
    assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_one_success_clears_the_failing_streak(owner, endpoint, notification_receiver):
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=100))
    paid(owner)

    run_jobs_in_process()

    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.enabled


@pytest.mark.django_db
def test_a_job_for_an_attempt_no_longer_due_stands_down(owner, endpoint, notification_receiver):
    paid(owner)
    services.delivery_redeliver(delivery=Delivery.objects.get())
    assert len(queued_jobs()) == 2

    run = run_jobs_in_process()

    assert len(notification_receiver.received("shop")) == 1
    assert sorted(outcome.split(":")[0] for _, outcome in run.ran) == ["delivered (200)", "nothing to do"]


@pytest.mark.django_db
def test_a_delivery_another_worker_is_sending_is_looked_at_again_when_its_lease_ends(
    owner, endpoint, notification_receiver
):
    paid(owner)
    started = timezone.now()
    Delivery.objects.update(sending_started_at=started)

    run = run_jobs_in_process()

    assert [outcome for _, outcome in run.ran] == ["being sent by another worker"]
    assert notification_receiver.received() == []
    (job,) = queued_jobs()
    assert job["scheduled_at"] == started + timedelta(seconds=services._lease_seconds())


@pytest.mark.django_db
def test_a_test_event_goes_to_its_endpoint_alone_even_disabled_and_to_no_feed(
    owner, endpoint, notification_receiver, owner_api
):
    other = EndpointFactory(owner=owner, url=notification_receiver.url_for("other"))
    services.endpoint_disable(endpoint=endpoint)

    services.endpoint_send_test(endpoint=endpoint)
    run_jobs_in_process()

    (received,) = notification_receiver.received()
    assert (received.name, received.type, received.verified) == ("shop", "notification.test", True)
    assert received.body["data"]["payment"] is None
    assert not other.deliveries.exists()
    assert owner_api.get("/api/events/").json()["results"] == []


@pytest.mark.django_db
def test_after_a_rotation_both_secrets_sign_for_a_while_then_only_the_new_one(
    owner, endpoint, notification_receiver, settings
):
    old_secret = endpoint.secret
    new_secret = services.endpoint_rotate_secret(endpoint=endpoint)
    assert new_secret != old_secret and new_secret.startswith("whsec_")

    notification_receiver.trust("shop", old_secret)
    paid(owner)
    run_jobs_in_process()
    notification_receiver.trust("shop", new_secret)
    paid(owner)
    run_jobs_in_process()
    Endpoint.objects.filter(pk=endpoint.pk).update(previous_secret_until=timezone.now() - timedelta(seconds=1))
    notification_receiver.trust("shop", old_secret)
    paid(owner)
    run_jobs_in_process()

    assert [r.verified for r in notification_receiver.received("shop")] == [True, True, False]


@pytest.mark.django_db
def test_neither_the_secret_nor_the_signature_is_logged_or_kept(owner, endpoint, notification_receiver, caplog):
    caplog.set_level(logging.DEBUG)
    notification_receiver.answer(500)
    paid(owner)

    run_jobs_in_process()

    kept = " ".join(f"{a.error} {a.response_excerpt}" for a in DeliveryAttempt.objects.all()) + " ".join(
        Delivery.objects.values_list("last_error", flat=True)
    )
    secret_body = endpoint.secret.removeprefix("whsec_")
    assert secret_body not in kept and secret_body not in caplog.text
    assert "v1," not in kept and "v1," not in caplog.text


@pytest.mark.django_db
def test_a_payment_with_no_endpoint_makes_no_delivery(owner):
    PaymentFactory(user=owner, status="succeeded")

    assert Event.objects.get().type == EventType.PAYMENT_SUCCEEDED
    assert (Delivery.objects.count(), queued_jobs()) == (0, [])
