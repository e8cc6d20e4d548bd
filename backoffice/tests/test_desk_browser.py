"""
The support desk in a real browser, as a new Support person uses it: the customer
reads the short order number off their order page ("Order ebb697fc"), support finds
the payment with it, reads its timeline and refunds part of it; and the desk's lists
fit a 1280 px screen.
"""

import time

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from backoffice.roles import SUPPORT
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.tests.factories import PaidPaymentFactory, RefundFactory, paid_payment_at_stripe
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

PASSWORD = "correct horse battery staple"
SCREEN = {"width": 1280, "height": 800}


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def sign_in_to_the_desk(page, live_server, user):
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_have_text("paymentsite back-office")


@pytest.fixture
def support_person(transactional_db):
    """Someone in the Support group, and nothing else: not a superuser."""
    user = UserFactory(username="sue", email="sue@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT))
    return user


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_support_finds_a_payment_by_the_order_pages_number_and_refunds_part_of_it(
    page, live_server, screenshot, owner, owner_api, stripe_webhooks, support_person
):
    payment = paid_payment_at_stripe(owner_api, amount=2400)
    Payment.objects.filter(pk=payment.pk).update(customer_email="ana@example.com", customer_name="Ana Lima")
    # Stripe's own webhooks about it reach the site and the workers apply them: the timeline shows them.
    wait_for(lambda: WebhookEvent.objects.filter(payment=payment, type="payment_intent.succeeded").exists())
    PaymentFactory.create_batch(5, amount=2400)
    page.set_viewport_size(SCREEN)

    # The customer's order page, as they see it.
    page.goto(f"{live_server.url}/accounts/login/?next=/checkout/{payment.pk}/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    heading = page.locator("h1")
    expect(heading).to_have_text(f"Order {str(payment.pk)[:8]}")
    screenshot("desk-1-customer-order-page")
    order_number = heading.inner_text()
    page.context.clear_cookies()

    # Support types what the customer wrote: "Order ebb697fc".
    sign_in_to_the_desk(page, live_server, support_person)
    page.click("#content-main .model-payment th a")
    page.fill("#searchbar", order_number)
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#search-read-as")).to_contain_text("start of a payment id")
    screenshot("desk-2-search-by-order-number")
    page.click("#result_list tbody tr th a")

    # The payment's page: a title in words, the shopper, one timeline.
    expect(page.locator("h1")).to_have_text("$24.00 from ana@example.com — Paid")
    expect(page.locator("#shopper-payments")).to_be_visible()
    timeline = page.locator("#timeline")
    expect(timeline.locator("tr.timeline-entry").last).to_contain_text("Payment of $24.00 created")
    expect(timeline).to_contain_text(" UTC")
    expect(timeline.locator("tr.timeline-stripe-event").first).to_contain_text("payment_intent.succeeded")
    stripe_links = page.locator(".field-stripe_links")
    expect(stripe_links).to_contain_text(f"PaymentIntent {payment.stripe_payment_intent_id}")
    expect(stripe_links).to_contain_text("Charge ch_")
    screenshot("desk-3-payment-page")

    page.click("text=Refund…")
    page.fill("#id_amount", "5.50")
    page.select_option("#id_reason", "requested_by_customer")
    page.fill("#id_note", "Customer kept one item")
    screenshot("desk-4-refund-form")
    page.click("#review-refund")
    expect(page.locator("#refund-confirmation")).to_contain_text("$18.50 will be left")
    screenshot("desk-5-refund-confirmation")
    page.click("#confirm-refund")

    expect(page.locator(".messagelist")).to_contain_text("Refund of $5.50 created")
    expect(page.locator("h1")).to_have_text("$24.00 from ana@example.com — Paid, partially refunded")
    newest = timeline.locator("tr.timeline-entry").first
    refund_row = timeline.locator("tr.timeline-refund").first
    expect(refund_row).to_contain_text("Refund of $5.50")
    expect(refund_row).to_contain_text("sue")
    expect(refund_row).to_contain_text("Customer kept one item")
    expect(timeline.locator("tr.timeline-staff-action").first).to_contain_text("Refunded $5.50")
    expect(newest).to_contain_text(" UTC")
    screenshot("desk-6-payment-after-refund")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_desks_lists_fit_a_1280_px_screen(page, live_server, screenshot, support_person):
    """No column is cut or pushed out of sight at 1280 px, with the filters beside the list."""
    for n in range(8):
        payment = PaidPaymentFactory(
            amount=2400 + n,
            customer_email=f"a-rather-long-shopper-address-{n}@example-storefront.com",
            card_last4=f"{4240 + n}",
            stripe_payment_intent_id=f"pi_3PqRsTuVwXyZ0123456789ab{n}",
        )
        RefundFactory(payment=payment, note="A note long enough to wrap in the refunds list, as notes are " * 2)
        Dispute.objects.create(
            stripe_dispute_id=f"dp_1AbCdEfGhIjKlMnOpQrStUv{n}", payment=payment, amount=2400, status="lost"
        )
    page.set_viewport_size(SCREEN)
    sign_in_to_the_desk(page, live_server, support_person)

    for name in ("payment", "refund", "dispute"):
        app = "refunds" if name == "refund" else "payments"
        page.goto(f"{live_server.url}/admin/{app}/{name}/")
        expect(page.locator("#result_list tbody tr")).to_have_count(8)
        screenshot(f"desk-list-{name}s")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        cut = page.evaluate(
            "(() => { const r = document.querySelector('#changelist .results');"
            " return r.scrollWidth - r.clientWidth; })()"
        )
        assert overflow <= 0, name
        assert cut <= 0, name
        expect(page.locator("#result_list .badge").first).to_be_visible()

    page.goto(f"{live_server.url}/admin/payments/payment/?q=pi_nothing")
    expect(page.locator("#empty-list")).to_have_text("No payment matches “pi_nothing”.")
