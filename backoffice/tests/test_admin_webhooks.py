"""The admin's webhook events: found by event or object id, payload readable, read-only, failed ones reprocessed."""

import re

import pytest
from django.test import Client

from devkit.workers import run_jobs_in_process
from payments.models import Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.tests.factories import payment_intent_event, post_event, refund_object, stripe_event, wait_until_applied

CHANGELIST = "/admin/webhooks/webhookevent/"


@pytest.fixture
def events(client, settings):
    """An applied event, and a refund's that failed: its PaymentIntent is not known here, and Stripe cannot say."""
    settings.WEBHOOK_APPLY_RETRIES = 0
    post_event(client, payment_intent_event("payment_intent.succeeded", intent_id="pi_admin_1"))
    post_event(client, stripe_event("refund.created", refund_object(intent_id="pi_admin_2", refund_id="re_admin")))
    return {event.object_id: event for event in WebhookEvent.objects.all()}


@pytest.mark.django_db
def test_the_list_shows_type_and_outcome(admin_client, events):
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    assert "payment_intent.succeeded" in content and "refund.created" in content
    assert "processed" in content and "failed" in content


@pytest.mark.django_db
def test_events_are_found_by_the_id_of_the_object_they_are_about(admin_client, events):
    response = admin_client.get(CHANGELIST, {"q": "re_admin"})

    assert list(response.context["cl"].result_list) == [events["re_admin"]]


@pytest.mark.django_db
def test_events_are_found_by_their_event_id(admin_client, events):
    event = events["pi_admin_1"]

    response = admin_client.get(CHANGELIST, {"q": event.stripe_event_id})

    assert list(response.context["cl"].result_list) == [event]


@pytest.mark.django_db
def test_the_payload_is_shown_pretty_printed_and_read_only(admin_client, events):
    event = events["pi_admin_1"]

    response = admin_client.get(f"{CHANGELIST}{event.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "<pre>{\n  &quot;api_version&quot;" in content
    assert 'name="_save"' not in content
    assert admin_client.post(f"{CHANGELIST}{event.pk}/change/", {"type": "x"}).status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.django_db
def test_reprocess_applies_failed_events_once_their_payment_is_known(admin_client, client, events):
    post_event(client, payment_intent_event("payment_intent.succeeded", intent_id="pi_admin_2"))
    failed = events["re_admin"]

    response = admin_client.post(
        CHANGELIST,
        {"action": "reprocess", "_selected_action": [failed.pk, events["pi_admin_1"].pk]},
        follow=True,
    )

    assert "Queued 1 event(s) for the workers" in response.content.decode()
    failed.refresh_from_db()
    assert failed.outcome == WebhookEvent.Outcome.PENDING
    run_jobs_in_process()
    failed.refresh_from_db()
    assert failed.outcome == WebhookEvent.Outcome.PROCESSED
    assert Refund.objects.get().payment == Payment.objects.get(stripe_payment_intent_id="pi_admin_2")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_support_staff_read_and_reprocess_a_failed_event_in_a_real_browser(
    live_server, page, screenshot, admin_user, settings
):
    """Chromium: find the failed event by its object id, read its payload, reprocess it from the list."""
    settings.WEBHOOK_APPLY_RETRIES = 0
    client = Client()
    post_event(client, stripe_event("refund.created", refund_object(intent_id="pi_browser", refund_id="re_browser")))
    post_event(client, payment_intent_event("payment_intent.succeeded", intent_id="pi_browser"))
    page.goto(live_server.url + "/admin/login/?next=" + CHANGELIST)
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")

    page.fill("#searchbar", "re_browser")
    page.press("#searchbar", "Enter")
    page.click("#result_list tbody a")
    assert '"id": "re_browser"' in page.locator("pre").inner_text()
    screenshot("webhook-event-payload")

    page.go_back()
    page.check("#result_list tbody input.action-select")
    page.select_option("select[name=action]", "reprocess")
    page.click("button[name=index]")
    screenshot("webhook-event-reprocessed")
    assert "Queued 1 event(s) for the workers" in page.locator(".messagelist").inner_text()
    # A worker applies it (here, or one of the session's real workers if they are running).
    run_jobs_in_process()
    assert wait_until_applied([WebhookEvent.objects.get(object_id="re_browser").stripe_event_id])
    assert WebhookEvent.objects.get(object_id="re_browser").outcome == WebhookEvent.Outcome.PROCESSED


@pytest.mark.django_db
def test_the_list_shows_times_with_their_zone(admin_client, events):
    """Received and processed times read with the site's time zone, as everywhere on the desk."""
    content = admin_client.get(CHANGELIST).content.decode()

    assert re.findall(r"\d\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC", content)
