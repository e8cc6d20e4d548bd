"""The disputes list in the admin: searchable, filtered to the open ones, read-only."""

import pytest
from django.urls import reverse

from payments.models import Dispute
from refunds.tests.factories import PaidPaymentFactory

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

CHANGELIST = "/admin/payments/dispute/"


@pytest.fixture
def disputes(db):
    payment = PaidPaymentFactory(amount=3000, currency="gbp")
    return [
        Dispute.objects.create(stripe_dispute_id="dp_open", payment=payment, amount=3000, status="needs_response"),
        Dispute.objects.create(stripe_dispute_id="dp_won", payment=PaidPaymentFactory(), amount=2000, status="won"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identifier",
    [lambda d: d.stripe_dispute_id, lambda d: str(d.payment_id), lambda d: d.payment.stripe_payment_intent_id],
    ids=["dispute id", "payment id", "payment intent"],
)
def test_search_finds_the_dispute(client, support_viewer, disputes, identifier):
    client.force_login(support_viewer)

    response = client.get(CHANGELIST, {"q": identifier(disputes[0])})

    assert list(response.context["cl"].result_list) == [disputes[0]]
    assert "£30.00" in response.content.decode()


@pytest.mark.django_db
def test_open_filter(client, support_viewer, disputes):
    client.force_login(support_viewer)

    assert list(client.get(CHANGELIST, {"open": "yes"}).context["cl"].result_list) == [disputes[0]]
    assert list(client.get(CHANGELIST, {"open": "no"}).context["cl"].result_list) == [disputes[1]]


@pytest.mark.django_db
def test_disputes_are_read_only(client, superuser, disputes):
    client.force_login(superuser)
    url = reverse("admin:payments_dispute_change", args=[disputes[0].pk])

    response = client.post(url, {"status": "won", "amount": "1"})

    assert response.status_code == 403
    disputes[0].refresh_from_db()
    assert (disputes[0].status, disputes[0].amount) == ("needs_response", 3000)
    assert client.get(reverse("admin:payments_dispute_delete", args=[disputes[0].pk])).status_code == 403
