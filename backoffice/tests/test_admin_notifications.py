"""
The support desk's notifications: endpoints made by staff with the endpoint
permissions, their secret shown once; the delivery log per endpoint and per
payment; redelivery, a test event, disabling; the dashboard flags failing endpoints.
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devkit.workers import run_jobs_in_process
from notifications.models import Delivery, DeliveryAttempt, Endpoint, Event, EventType
from notifications.tests.factories import EndpointFactory, queued_jobs
from payments.tests.factories import UserFactory
from refunds.tests.factories import PaidPaymentFactory

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

ENDPOINTS = "/admin/notifications/endpoint/"
DELIVERIES = "/admin/notifications/delivery/"
MANAGE = ("add_endpoint", "change_endpoint", "view_endpoint", "view_delivery", "change_delivery", "view_payment")


def staff_client(username: str, codenames) -> Client:
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def manager(db):
    """Staff who manage endpoints and deliveries."""
    return staff_client("nina", MANAGE)


@pytest.fixture
def viewer(db):
    """Staff who may only look."""
    return staff_client("victor", ("view_endpoint", "view_delivery", "view_payment"))


def add_endpoint(client, **fields):
    data = {"url": "https://shop.example.com/hooks", "description": "", "owner": "", "enabled": "on"}
    data |= fields
    data.setdefault("event_types", [EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_REFUNDED])
    return client.post(f"{ENDPOINTS}add/", data)


@pytest.mark.django_db
def test_a_new_endpoints_secret_is_shown_once_and_never_again(manager):
    response = add_endpoint(manager)

    endpoint = Endpoint.objects.get()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in response.content.decode()
    assert endpoint.event_types == [EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_REFUNDED]
    page = manager.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()
    assert endpoint.secret.removeprefix("whsec_") not in page
    assert endpoint.secret.removeprefix("whsec_") not in manager.get(ENDPOINTS).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["ftp://shop.example.com/hooks", "file:///etc/passwd", "javascript:alert(1)"])
def test_only_http_and_https_urls_are_taken(manager, url):
    response = add_endpoint(manager, url=url)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"]
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
def test_rotating_shows_the_new_secret_once_and_takes_a_post(manager):
    endpoint = EndpointFactory()
    old = endpoint.secret

    assert manager.get(f"{ENDPOINTS}{endpoint.pk}/rotate-secret/").status_code == 405
    response = manager.post(f"{ENDPOINTS}{endpoint.pk}/rotate-secret/")

    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in response.content.decode()


@pytest.mark.django_db
def test_send_a_test_event_queues_a_delivery_to_that_endpoint(manager):
    endpoint = EndpointFactory()

    response = manager.post(f"{ENDPOINTS}{endpoint.pk}/send-test/", follow=True)

    delivery = Delivery.objects.get()
    assert (delivery.endpoint, delivery.event.type) == (endpoint, EventType.TEST)
    assert len(queued_jobs()) == 1
    assert "A test event is on its way" in response.content.decode()


@pytest.mark.django_db
def test_staff_disable_and_enable_an_endpoint_through_its_buttons_not_its_form(manager):
    endpoint = EndpointFactory(failing_since=timezone.now() - timedelta(days=1))

    manager.post(f"{ENDPOINTS}{endpoint.pk}/disable/")
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "Disabled by nina."
    page = manager.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()
    assert 'id="enable"' in page and 'name="enabled"' not in page

    manager.post(f"{ENDPOINTS}{endpoint.pk}/enable/")
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None


@pytest.mark.django_db
def test_staff_without_the_change_permission_can_look_but_not_act(viewer):
    endpoint = EndpointFactory()

    page = viewer.get(f"{ENDPOINTS}{endpoint.pk}/change/")
    assert page.status_code == 200 and 'id="rotate-secret"' not in page.content.decode()
    for action in ("rotate-secret", "send-test", "disable"):
        assert viewer.post(f"{ENDPOINTS}{endpoint.pk}/{action}/").status_code == 403
    assert viewer.post(f"{ENDPOINTS}add/", {"url": "https://x.example.com/"}).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.enabled and not Delivery.objects.exists()


@pytest.fixture
def delivered(owner, notification_receiver):
    endpoint = EndpointFactory(owner=owner, url=notification_receiver.url_for("shop"))
    notification_receiver.trust("shop", endpoint.secret)
    notification_receiver.answer(500)
    PaidPaymentFactory(user=owner)
    run_jobs_in_process()
    return Delivery.objects.get()


@pytest.mark.django_db
def test_the_delivery_log_shows_each_attempt_with_status_duration_and_answer(manager, delivered):
    attempt = DeliveryAttempt.objects.get()

    page = manager.get(f"{DELIVERIES}{delivered.pk}/change/").content.decode()

    assert "500" in page and f"{attempt.duration_ms} ms" in page
    assert "refused: 500" in page  # the receiver's answer, excerpted
    assert delivered.event.public_id in page
    assert delivered.endpoint.secret.removeprefix("whsec_") not in page


@pytest.mark.django_db
def test_a_delivery_is_redelivered_from_its_page(manager, delivered, notification_receiver):
    notification_receiver.answer(200)

    manager.post(f"{DELIVERIES}{delivered.pk}/redeliver/")
    run_jobs_in_process()

    delivered.refresh_from_db()
    assert delivered.state == Delivery.State.DELIVERED


@pytest.mark.django_db
def test_deliveries_are_found_by_event_id_or_payment_id(manager, delivered):
    for term in (delivered.event.public_id, str(delivered.event.payment_id)):
        response = manager.get(DELIVERIES, {"q": term})
        assert list(response.context["cl"].result_list) == [delivered]
    assert list(manager.get(DELIVERIES, {"q": "ntf_nothing"}).context["cl"].result_list) == []


@pytest.mark.django_db
def test_the_endpoint_page_lists_its_latest_deliveries(manager, delivered):
    page = manager.get(f"{ENDPOINTS}{delivered.endpoint.pk}/change/").content.decode()

    assert f"#{delivered.pk}" in page and "payment.succeeded" in page and "HTTP 500." in page


@pytest.mark.django_db
def test_the_payment_page_shows_its_notifications_in_a_constant_number_of_queries(manager, owner):
    EndpointFactory(owner=owner)
    EndpointFactory()
    payment = PaidPaymentFactory(user=owner, amount=2000)
    url = f"/admin/payments/payment/{payment.pk}/change/"
    manager.get(url)  # Django caches content types on the first page.
    with CaptureQueriesContext(connection) as few:
        page = manager.get(url).content.decode()
    assert "Storefront told: payment.succeeded" in page and "pending" in page

    payment.set_refunded_amount(500)
    payment.save()
    payment.set_refunded_amount(700)
    payment.save()
    assert Event.objects.filter(payment=payment).count() == 3
    with CaptureQueriesContext(connection) as more:
        manager.get(url)

    assert len(more.captured_queries) == len(few.captured_queries)


@pytest.mark.django_db
def test_the_dashboard_flags_failing_endpoints(manager):
    EndpointFactory(failing_since=timezone.now() - timedelta(hours=2))
    EndpointFactory()

    response = manager.get("/admin/payments/payment/dashboard/")

    assert response.context["figures"].failing_endpoints == 1
    assert "?failing=yes" in response.context["failing_endpoints_url"]
    listed = manager.get(response.context["failing_endpoints_url"]).context["cl"].result_list
    assert len(listed) == 1
