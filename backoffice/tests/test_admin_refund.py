"""
The admin's refund form: review, confirm, then refunds.services.refund_create
with the form's one-time token as the idempotency key, against the local Stripe.
"""

import re
import threading

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from payments.models import Dispute, Payment
from refunds.models import Refund

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def paid(paid_payment):
    """A $20.00 payment made through the API and paid at the local Stripe."""
    return paid_payment(amount=2000)


@pytest.fixture
def desk(client, support_refunder):
    client.force_login(support_refunder)
    return client


def refund_url(payment) -> str:
    return reverse("admin:payments_payment_refund", args=[payment.pk])


def form_token(response) -> str:
    return re.search(r'name="token" value="([0-9a-f]+)"', response.content.decode()).group(1)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_form_offers_all_that_is_left(desk, paid):
    response = desk.get(refund_url(paid))

    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="amount"' in body and 'value="20.00"' in body
    assert "$20.00" in body
    assert form_token(response)


@pytest.mark.django_db
def test_review_states_exactly_what_will_happen_and_refunds_nothing(desk, paid, fake_stripe):
    token = form_token(desk.get(refund_url(paid)))

    response = desk.post(
        refund_url(paid), {"amount": "5.00", "reason": "requested_by_customer", "note": "ticket 42", "token": token}
    )

    body = response.content.decode()
    assert "<strong>$5.00</strong> will be sent back" in body
    assert "<strong>$15.00</strong> will be left" in body
    assert "ticket 42" in body and "Requested By Customer" in body
    assert 'name="confirm"' in body
    assert not Refund.objects.exists()
    assert fake_stripe.list("refunds") == []


@pytest.mark.django_db
def test_partial_refund(desk, paid, support_refunder, fake_stripe):
    token = form_token(desk.get(refund_url(paid)))

    response = desk.post(
        refund_url(paid),
        {"amount": "5.00", "reason": "requested_by_customer", "note": "ticket 42", "token": token, "confirm": "yes"},
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:payments_payment_change", args=[paid.pk])
    assert any("Refund of $5.00 created" in m for m in messages_of(response))
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.note, refund.created_by) == (
        500,
        "requested_by_customer",
        "ticket 42",
        support_refunder,
    )
    assert len(fake_stripe.list("refunds")) == 1
    paid.refresh_from_db()
    assert (paid.status, paid.refunded_amount) == (Payment.Status.PARTIALLY_REFUNDED, 500)
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.user, entry.object_id) == (ADDITION, support_refunder, str(refund.pk))
    assert "$5.00" in entry.change_message and "ticket 42" in entry.change_message


@pytest.mark.django_db
def test_full_refund_with_the_default_amount(desk, paid):
    token = form_token(desk.get(refund_url(paid)))

    desk.post(refund_url(paid), {"amount": "20.00", "token": token, "confirm": "yes"})

    paid.refresh_from_db()
    assert (paid.status, paid.refunded_amount) == (Payment.Status.REFUNDED, 2000)
    assert Refund.objects.get().amount == 2000


@pytest.mark.django_db
def test_over_refund_is_refused_with_what_is_left(desk, paid, fake_stripe):
    token = form_token(desk.get(refund_url(paid)))
    desk.post(refund_url(paid), {"amount": "15.00", "token": token, "confirm": "yes"})

    response = desk.post(
        refund_url(paid), {"amount": "10.00", "token": form_token(desk.get(refund_url(paid))), "confirm": "yes"}
    )

    assert response.status_code == 200
    assert "only $5.00 can still be refunded" in response.content.decode()
    assert Refund.objects.count() == 1
    assert len(fake_stripe.list("refunds")) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["5.005", "0.001", "0.00", "-1.00"])
def test_an_amount_that_is_not_a_whole_number_of_cents_is_refused_not_rounded(desk, paid, fake_stripe, amount):
    """$5.005 is no amount of money in cents: refused, never truncated to $5.00 behind staff's back."""
    response = desk.post(
        refund_url(paid), {"amount": amount, "token": form_token(desk.get(refund_url(paid))), "confirm": "yes"}
    )

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Refund.objects.exists()
    assert fake_stripe.list("refunds") == []


@pytest.mark.django_db
@pytest.mark.parametrize("amount, minor", [("5.00", 500), ("15.00", 1500), ("20.00", 2000)])
def test_the_same_form_sent_twice_refunds_once(desk, paid, fake_stripe, amount, minor):
    """
    A double-click or a reload of the confirmation sends the same token: one
    refund, and the second answer says so, even when what is left is now less
    than the form's amount (or nothing).
    """
    token = form_token(desk.get(refund_url(paid)))
    form = {"amount": amount, "note": "once", "token": token, "confirm": "yes"}

    desk.post(refund_url(paid), form)
    again = desk.post(refund_url(paid), form)

    assert again.status_code == 302
    assert any("already sent" in m for m in messages_of(again))
    assert Refund.objects.count() == 1
    assert len(fake_stripe.list("refunds")) == 1
    paid.refresh_from_db()
    assert paid.refunded_amount == minor
    assert LogEntry.objects.count() == 1


@pytest.mark.django_db
def test_a_refund_the_service_refuses_shows_its_message(desk, paid):
    """The customer won a chargeback between the review and the confirmation: the service says why."""
    token = form_token(desk.get(refund_url(paid)))
    Dispute.objects.create(stripe_dispute_id="dp_lost", payment=paid, amount=2000, status=Dispute.Status.LOST)

    response = desk.post(refund_url(paid), {"amount": "5.00", "token": token, "confirm": "yes"})

    assert response.status_code == 400
    assert any("dispute was lost" in m for m in messages_of(response))
    assert not Refund.objects.exists()
    # A fresh token for the next attempt.
    assert form_token(response) != token


@pytest.mark.django_db
def test_a_payment_no_longer_refundable_is_refused_before_the_service(desk, paid, fake_stripe):
    token = form_token(desk.get(refund_url(paid)))
    Payment.objects.filter(pk=paid.pk).update(status=Payment.Status.CANCELED)

    response = desk.post(refund_url(paid), {"amount": "5.00", "token": token, "confirm": "yes"})

    assert response.status_code == 302
    assert any("cannot be refunded: it is canceled" in m for m in messages_of(response))
    assert not Refund.objects.exists()
    assert fake_stripe.list("refunds") == []


@pytest.mark.django_db
def test_stripe_failing_leaves_the_refund_pending_and_says_so(desk, paid, fake_stripe):
    token = form_token(desk.get(refund_url(paid)))
    fake_stripe.add_fault("error500", path="/v1/refunds")

    response = desk.post(refund_url(paid), {"amount": "5.00", "token": token, "confirm": "yes"})

    assert response.status_code == 302
    message = " ".join(messages_of(response))
    assert "pending" in message and "retry_refunds" in message
    assert Refund.objects.get().status == Refund.Status.PENDING
    paid.refresh_from_db()
    assert paid.refunded_amount == 0


@pytest.mark.django_db(transaction=True)
def test_a_double_click_sent_at_the_same_moment_refunds_once(paid, support_refunder, fake_stripe):
    """Two confirmations of one form racing each other (real concurrent transactions): one refund."""
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(support_refunder)
    token = form_token(clients[0].get(refund_url(paid)))
    form = {"amount": "5.00", "token": token, "confirm": "yes"}
    start = threading.Barrier(2)
    statuses = []

    def confirm(client):
        try:
            start.wait()
            statuses.append(client.post(refund_url(paid), form).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(statuses) == 2 and 302 in statuses
    assert Refund.objects.count() == 1
    assert len(fake_stripe.list("refunds")) == 1
    paid.refresh_from_db()
    assert paid.refunded_amount == 500
