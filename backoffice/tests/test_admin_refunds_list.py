"""The refunds list in the admin: who made each refund, how to find it, and nothing editable."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from refunds.models import Refund
from refunds.tests.factories import RefundFactory

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

CHANGELIST = "/admin/refunds/refund/"


@pytest.fixture
def desk(client, support_viewer):
    client.force_login(support_viewer)
    return client


def listed(response) -> list[Refund]:
    return list(response.context["cl"].result_list)


@pytest.mark.django_db
def test_list_shows_who_made_each_refund_or_stripe(desk, support_refunder):
    RefundFactory(created_by=None, note="from the dashboard", payment__currency="jpy", amount=500)
    RefundFactory(created_by=support_refunder, reason=Refund.Reason.DUPLICATE, amount=1250)

    body = desk.get(CHANGELIST).content.decode()

    assert ">Stripe<" in body and ">rita<" in body
    assert "duplicate" in body and "from the dashboard" in body
    assert "¥500" in body and "$12.50" in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identifier",
    [
        lambda r: str(r.pk),
        lambda r: r.stripe_refund_id,
        lambda r: str(r.payment_id),
        lambda r: r.payment.stripe_payment_intent_id,
    ],
    ids=["refund id", "stripe refund id", "payment id", "payment intent"],
)
def test_search_finds_the_refund_by_each_identifier(desk, identifier):
    wanted = RefundFactory(stripe_refund_id="re_wanted")
    RefundFactory.create_batch(2)

    assert listed(desk.get(CHANGELIST, {"q": identifier(wanted)})) == [wanted]


@pytest.mark.django_db
def test_filters_by_origin_and_pending_for_over_an_hour(desk, support_refunder):
    stuck = RefundFactory(status=Refund.Status.PENDING, created_at=timezone.now() - timedelta(hours=2))
    RefundFactory(status=Refund.Status.PENDING)
    mine = RefundFactory(status=Refund.Status.SUCCEEDED, created_by=support_refunder)

    assert listed(desk.get(CHANGELIST, {"stuck": "yes"})) == [stuck]
    assert listed(desk.get(CHANGELIST, {"origin": "staff"})) == [mine]
    assert mine not in listed(desk.get(CHANGELIST, {"origin": "stripe"}))


@pytest.mark.django_db
def test_a_refund_cannot_be_changed_through_a_post(client, superuser):
    refund = RefundFactory(amount=500, status=Refund.Status.PENDING)
    client.force_login(superuser)

    response = client.post(
        reverse("admin:refunds_refund_change", args=[refund.pk]), {"amount": "1", "status": "succeeded"}
    )

    assert response.status_code == 403
    refund.refresh_from_db()
    assert (refund.amount, refund.status) == (500, Refund.Status.PENDING)
