"""The support desk in a real browser: find a payment by its PaymentIntent id, refund part of it."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory
from refunds.tests.factories import PaidPaymentFactory, paid_payment_at_stripe

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

PASSWORD = "correct horse battery staple"


def sign_in(page, live_server, user):
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_staff_find_a_payment_and_refund_part_of_it(
    page, live_server, screenshot, owner_api, fake_stripe, support_refunder
):
    payment = paid_payment_at_stripe(owner_api, amount=2000)
    PaymentFactory.create_batch(5)
    sign_in(page, live_server, support_refunder)

    page.click("#content-main .model-payment th a")
    screenshot("admin-payments-list")
    page.fill("#searchbar", payment.stripe_payment_intent_id)
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.click("#result_list tbody tr th a")
    expect(page.locator("div.form-row.field-amount_display")).to_contain_text("$20.00")
    page.click("text=Refund…")
    page.fill("#id_amount", "5.00")
    page.select_option("#id_reason", "requested_by_customer")
    page.fill("#id_note", "Customer kept one item")
    screenshot("admin-refund-form")
    page.click("#review-refund")
    expect(page.locator("#refund-confirmation")).to_contain_text("$15.00 will be left")
    screenshot("admin-refund-confirmation")
    page.click("#confirm-refund")

    expect(page.locator(".messagelist")).to_contain_text("Refund of $5.00 created")
    expect(page.locator("div.form-row.field-status_display")).to_contain_text("partially refunded")
    expect(page.locator("div.form-row.field-refunded_display")).to_contain_text("$5.00")
    expect(page.locator("#timeline")).to_contain_text("Customer kept one item")
    screenshot("admin-payment-after-refund")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_in_the_browser(page, live_server, screenshot, support_refunder):
    now = timezone.now()
    for days in range(0, 30, 2):
        PaidPaymentFactory.create_batch(days % 5 + 1, amount=1000 + days * 150, created_at=now - timedelta(days=days))
    PaymentFactory.create_batch(3, status=Payment.Status.FAILED)
    Dispute.objects.create(
        stripe_dispute_id="dp_browser", payment=Payment.objects.first(), amount=1000, status="needs_response"
    )
    sign_in(page, live_server, support_refunder)
    screenshot("admin-index")

    page.click("#dashboard-link")

    expect(page.locator("#volume-chart rect.bar")).to_have_count(30)
    expect(page.locator("#open-disputes .value")).to_have_text("1")
    screenshot("admin-dashboard")
    page.click("#open-disputes a")
    expect(page).to_have_url(re.compile(r"/admin/payments/dispute/\?open=yes"))
    expect(page.locator("#result_list")).to_contain_text("dp_browser")
