"""
The admin refund form's amount is typed by people (or pasted by anyone with the
page): whatever is typed, it is a form error or an amount, never a 500 and never
minutes of CPU turning "1e999999999" into a billion-digit number.
"""

import re

import pytest
from django.urls import reverse

from backoffice.refund_form import RefundForm
from payments.currencies import CURRENCIES
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory

HOSTILE_AMOUNTS = [
    "1e999999999",
    "1E+999999999",
    "1e999999999999999999",
    "-1e999999999",
    "1e-999999999",
    "0.1e99999",
    "9" * 100_000,
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "0x10",
]


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
@pytest.mark.parametrize("currency", ["usd", "jpy"])
def test_a_hostile_amount_is_a_form_error(amount, currency):
    form = RefundForm(data={"amount": amount, "token": "t"}, currency=CURRENCIES[currency], refundable=10_000)

    assert not form.is_valid()
    assert form.errors["amount"]


@pytest.mark.parametrize("amount, minor", [("100.00", 10_000), ("1E+2", 10_000), ("0.01", 1), ("99.99", 9_999)])
def test_amounts_up_to_what_is_left_are_taken(amount, minor):
    form = RefundForm(data={"amount": amount, "token": "t"}, currency=CURRENCIES["usd"], refundable=10_000)

    assert form.is_valid(), form.errors
    assert form.cleaned_data["amount"] == minor


def test_above_what_is_left_the_message_says_how_much_is_left():
    form = RefundForm(data={"amount": "1e9", "token": "t"}, currency=CURRENCIES["usd"], refundable=10_000)

    assert not form.is_valid()
    assert "That is more than is left: only $100.00 can still be refunded." in form.errors["amount"]


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["1e999999999", "1e999999999999999999", "9" * 100_000])
def test_the_refund_page_answers_a_hostile_amount_with_the_form_again(client, support_refunder, amount):
    payment = PaidPaymentFactory(amount=2000)
    client.force_login(support_refunder)
    url = reverse("admin:payments_payment_refund", args=[payment.pk])
    token = re.search(r'name="token" value="([0-9a-f]+)"', client.get(url).content.decode()).group(1)

    response = client.post(url, {"amount": amount, "token": token, "confirm": "yes"})

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Refund.objects.exists()
