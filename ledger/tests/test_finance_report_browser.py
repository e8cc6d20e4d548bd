"""
The `make run` check in a real browser: a shopper pays on /checkout/, staff refund
part of it, the local Stripe pays out (`manage.py local_payout`); a finance user
signed in to the admin sees the payment's fee, the refund, the net and the payout
in the finance report.
"""

import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from devkit.stripe_ledger import card_fee
from ledger.models import BalanceTransaction, Payout
from ledger.tests.factories import finance_user
from payments.currencies import format_amount
from payments.tests.factories import api_client_for
from refunds.tests.factories import request_refund
from storefront.tests.test_checkout_browser import (
    PASSWORD,
    PAYS,
    checkout_site,  # noqa: F401 (a fixture)
    customer,  # noqa: F401 (a fixture)
    expect_webhook_landed,
    pay_with,
    sign_in,
    status_page_payment,
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fast_password_hashing")]


def wait_for(predicate, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.2)


def test_a_checkout_a_refund_and_a_payout_show_in_the_finance_report(page, checkout_site, customer, staff, screenshot):  # noqa: F811
    sign_in(page, checkout_site, customer)
    pay_with(page, PAYS)
    payment = status_page_payment(page)
    expect_webhook_landed(page, payment, "payment_intent.succeeded")
    paid = payment.amount
    assert request_refund(api_client_for(staff), payment, {"amount": 500}, key="browser-refund").status_code == 201
    wait_for(lambda: BalanceTransaction.objects.count() == 2, "the charge's and the refund's balance transactions")
    call_command("local_payout", "--currency", payment.currency)
    wait_for(lambda: Payout.objects.filter(reconciliation="reconciled").exists(), "the payout's reconciliation")

    viewer = finance_user("fran")
    viewer.set_password(PASSWORD)
    viewer.save()
    page.context.clear_cookies()
    page.goto(checkout_site.url + "/admin/login/?next=/admin/ledger/payout/report/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    payout = Payout.objects.get()
    row = page.locator(f"#per-payout tr[data-payout='{payout.stripe_payout_id}']")
    expect(row).to_be_visible()
    fee = card_fee(paid, payment.currency)
    for amount in (paid, -500, fee, paid - fee - 500):
        expect(row).to_contain_text(format_amount(amount, payment.currency))
    expect(row.locator(".net")).to_have_text(row.locator(".payout-amount").inner_text())
    expect(page.locator("#per-day")).to_contain_text(format_amount(paid - fee - 500, payment.currency))
    screenshot("finance-report")
