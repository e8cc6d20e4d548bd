"""
A lost dispute shows on its payment (issue 16, fault 13): the payment is no longer
plainly `succeeded`-and-paid. It carries the dispute's outcome (`dispute_status`)
and what lost disputes took back (`amount_lost_to_disputes`), in the API, in the
storefront's notifications and on the support desk's payment page.
"""

import time

import pytest
from django.urls import reverse

from payments.models import Payment
from refunds.tests.factories import PaidPaymentFactory, request_refund
from webhooks.tests.factories import dispute_object, post_event, stripe_event


@pytest.fixture
def payment(owner):
    return PaidPaymentFactory(user=owner, amount=5000)


def dispute_news(payment, *steps, amount=3000):
    """One dispute of `payment` through `steps` (event type, status), a second apart, in the order given."""
    stripe_dispute = dispute_object(intent_id=payment.stripe_payment_intent_id, amount=amount)
    now = int(time.time())
    return [
        stripe_event(event_type, {**stripe_dispute, "status": status}, created=now + offset)
        for offset, (event_type, status) in steps
    ]


LOST = [
    (0, ("charge.dispute.created", "needs_response")),
    (1, ("charge.dispute.updated", "under_review")),
    (2, ("charge.dispute.closed", "lost")),
]


@pytest.mark.django_db
@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]], ids=["in order", "closed first", "shuffled"])
def test_a_lost_dispute_shows_on_the_payment_in_any_order(client, owner_api, payment, order):
    """Lost, whatever order the news came in: the payment says so and what it lost, also in the API."""
    events = dispute_news(payment, *LOST)
    for index in order:
        post_event(client, events[index])

    payment.refresh_from_db()
    assert (payment.dispute_status, payment.amount_lost_to_disputes) == ("lost", 3000)
    assert payment.dispute_lost
    body = owner_api.get(f"/api/payments/{payment.id}/").json()
    assert (body["dispute_status"], body["amount_lost_to_disputes"]) == ("lost", 3000)


@pytest.mark.django_db
def test_an_open_or_won_dispute_loses_nothing(client, payment):
    """Open, the payment shows the dispute under way; won, the money is back: nothing lost."""
    events = dispute_news(
        payment, (0, ("charge.dispute.created", "needs_response")), (1, ("charge.dispute.closed", "won"))
    )
    post_event(client, events[0])
    payment.refresh_from_db()
    assert (payment.dispute_status, payment.amount_lost_to_disputes) == ("needs_response", 0)

    post_event(client, events[1])

    payment.refresh_from_db()
    assert (payment.dispute_status, payment.amount_lost_to_disputes) == ("won", 0)
    assert not payment.dispute_lost


@pytest.mark.django_db
def test_two_disputes_add_up_what_they_lost(client, payment):
    """Each lost dispute's amount counts; the payment shows the latest dispute's status."""
    for amount in (1000, 1500):
        for event in dispute_news(payment, (0, ("charge.dispute.closed", "lost")), amount=amount):
            post_event(client, event)

    payment.refresh_from_db()
    assert payment.amount_lost_to_disputes == 2500


@pytest.mark.django_db
def test_a_payment_never_disputed_shows_no_dispute(owner_api, payment):
    body = owner_api.get(f"/api/payments/{payment.id}/").json()

    assert (body["dispute_status"], body["amount_lost_to_disputes"]) == ("", 0)


@pytest.mark.django_db
def test_the_desk_page_shows_the_loss_and_refunds_are_refused(client, admin_client, staff_api, payment):
    """The payment page says the dispute was lost and how much; a refund of the lost money is refused."""
    for event in dispute_news(payment, *LOST):
        post_event(client, event)

    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()

    assert "dispute lost" in page
    assert "lost: $30.00 lost to disputes" in page
    assert request_refund(staff_api, payment, {"amount": 1000}).status_code == 409
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.refunded_amount == 0
