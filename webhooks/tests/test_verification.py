"""
What the endpoint checks before storing anything, besides the signature itself:
the timestamp is within 300 s of now either way, any configured secret verifies
(a rotation), and the event's mode is the key's mode. A refusal is 400 and leaves
no event and no job behind.
"""

import time

import pytest
from django.db import connection

from webhooks.models import WebhookEvent
from webhooks.tests.factories import payment_intent_event, post_event

OLD_SECRET = "whsec_rotating_out"
NEW_SECRET = "whsec_rotating_in"


@pytest.fixture
def event():
    return payment_intent_event("payment_intent.succeeded", intent_id="pi_verification")


def jobs_queued() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_jobs")
        return cursor.fetchone()[0]


def assert_refused(response, reason: str):
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert WebhookEvent.objects.count() == 0
    assert jobs_queued() == 0


def assert_stored(response):
    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1
    assert jobs_queued() == 1


@pytest.mark.django_db
def test_a_timestamp_more_than_five_minutes_ahead_is_refused(client, event):
    response = post_event(client, event, timestamp=int(time.time()) + 301, apply=False)

    assert_refused(response, "in the future")


@pytest.mark.django_db
def test_a_timestamp_less_than_five_minutes_ahead_is_accepted(client, event):
    """Clocks drift: Stripe's and ours may disagree by a little, in either direction."""
    assert_stored(post_event(client, event, timestamp=int(time.time()) + 240, apply=False))


@pytest.mark.django_db
def test_a_timestamp_more_than_five_minutes_old_is_refused(client, event):
    assert_refused(post_event(client, event, timestamp=int(time.time()) - 301, apply=False), "Bad signature")


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
def test_during_a_rotation_either_secret_verifies(client, event, settings, secret):
    settings.STRIPE_WEBHOOK_SECRET = f"{OLD_SECRET}, {NEW_SECRET}"

    assert_stored(post_event(client, event, secret=secret, apply=False))


@pytest.mark.django_db
def test_during_a_rotation_a_third_secret_is_still_refused(client, event, settings):
    settings.STRIPE_WEBHOOK_SECRET = f"{OLD_SECRET},{NEW_SECRET}"

    assert_refused(post_event(client, event, secret="whsec_someone_else", apply=False), "Bad signature")


@pytest.mark.django_db
def test_a_live_event_is_refused_by_a_site_with_a_test_key(client, event, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_paymentsite_tests"
    event["livemode"] = True

    assert_refused(post_event(client, event, apply=False), "live-mode event")


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["sk_live_paymentsite", "rk_live_paymentsite"])
def test_a_test_event_is_refused_by_a_site_with_a_live_key(client, event, settings, key):
    settings.STRIPE_SECRET_KEY = key

    assert_refused(post_event(client, event, apply=False), "test-mode event")


@pytest.mark.django_db
def test_a_live_event_is_stored_by_a_site_with_a_live_key(client, event, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_paymentsite"
    event["livemode"] = True

    assert_stored(post_event(client, event, apply=False))


@pytest.mark.django_db
def test_a_restricted_test_key_takes_test_events(client, event, settings):
    settings.STRIPE_SECRET_KEY = "rk_test_paymentsite"

    assert_stored(post_event(client, event, apply=False))


@pytest.mark.django_db
def test_an_event_without_livemode_is_refused(client, event):
    del event["livemode"]

    assert_refused(post_event(client, event, apply=False), "no livemode")
