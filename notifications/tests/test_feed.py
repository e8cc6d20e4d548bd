"""GET /api/events/: the caller's notification events, oldest first, a page at a time; errors in JSON with a code."""

import pytest

from notifications.models import Event
from notifications.payloads import event_body
from payments.tests.factories import api_client_for
from refunds.tests.factories import PaidPaymentFactory


@pytest.fixture
def events(owner, outsider):
    """Five events of the owner's payments, interleaved with the outsider's."""
    for _ in range(5):
        PaidPaymentFactory(user=owner)
        PaidPaymentFactory(user=outsider)
    return list(Event.objects.filter(user=owner).order_by("sequence"))


@pytest.mark.django_db
def test_the_feed_answers_the_callers_events_oldest_first_as_delivered(owner_api, events):
    response = owner_api.get("/api/events/")

    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [event_body(event) for event in events]
    assert body["next"] is None


@pytest.mark.django_db
def test_the_feed_reads_on_after_a_sequence_a_page_at_a_time(owner_api, events):
    first = owner_api.get("/api/events/?limit=2").json()
    assert [item["sequence"] for item in first["results"]] == [e.sequence for e in events[:2]]
    assert first["next"].endswith(f"/api/events/?after={events[1].sequence}&limit=2")

    seen = [item["id"] for item in first["results"]]
    url = first["next"]
    while url:
        page = owner_api.get(url).json()
        seen += [item["id"] for item in page["results"]]
        url = page["next"]

    assert seen == [event.public_id for event in events]
    assert owner_api.get(f"/api/events/?after={events[-1].sequence}").json() == {"results": [], "next": None}


@pytest.mark.django_db
def test_another_users_events_are_never_in_the_feed(outsider, events):
    sequences = [item["sequence"] for item in api_client_for(outsider).get("/api/events/").json()["results"]]

    assert len(sequences) == 5
    assert not set(sequences) & {event.sequence for event in events}


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["after=-1", "after=abc", "after=1.5", "limit=0", "limit=201", "after=٣"])
def test_a_bad_cursor_or_limit_is_a_400_naming_it(owner_api, query):
    response = owner_api.get(f"/api/events/?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [query.split("=")[0]]


@pytest.mark.django_db
def test_the_feed_needs_a_signed_in_user(client):
    response = client.get("/api/events/")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
