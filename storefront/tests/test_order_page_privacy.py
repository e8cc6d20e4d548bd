"""The order page (/checkout/<id>/) is the customer's: it never carries the support desk's refund notes."""

import json
import re

import pytest
from django.contrib.auth.models import Permission

from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.models import Refund
from refunds.tests.factories import RefundFactory


@pytest.fixture
def refunded_payment(owner):
    payment = PaymentFactory(user=owner, status=Payment.Status.PARTIALLY_REFUNDED, refunded_amount=500)
    desk = UserFactory(username="desk-agent-rita", is_staff=True)
    RefundFactory(
        payment=payment,
        amount=500,
        status=Refund.Status.SUCCEEDED,
        note="Customer threatened a chargeback; internal ticket 4711",
        created_by=desk,
    )
    return payment


def embedded_state(html: str) -> dict:
    """What the page hands its script: the API's answers, as JSON."""
    match = re.search(r'<script id="payment-state" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


@pytest.mark.django_db
@pytest.mark.parametrize("owner_is_staff_with_view_refund", [False, True])
def test_the_order_page_embeds_no_note_and_not_who_refunded(
    client, owner, refunded_payment, owner_is_staff_with_view_refund
):
    """Not even when the customer happens to be staff: the page is the customer's view."""
    if owner_is_staff_with_view_refund:
        owner.is_staff = True
        owner.save()
        owner.user_permissions.add(Permission.objects.get(codename="view_refund"))
    client.force_login(owner)

    html = client.get(f"/checkout/{refunded_payment.id}/").content.decode()

    assert "chargeback" not in html and "4711" not in html
    assert "desk-agent-rita" not in html
    [refund] = embedded_state(html)["refunds"]
    assert refund["amount"] == 500 and refund["status"] == "succeeded"
    assert "note" not in refund and "created_by" not in refund
