"""
The whole journey in a real browser: a customer signs in, pays on /checkout/ with
a test card through the local Stripe's Stripe.js and our API, and the order's
status page follows our database until the local Stripe's own webhook has landed.
"""

import re

import pytest
from playwright.sync_api import expect

import core.stripe_gateway as stripe_gateway
from devkit.pytest_plugin import ARTIFACTS
from payments.models import Payment
from payments.tests.factories import UserFactory
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fast_password_hashing")]

PASSWORD = "paymentsite-demo"
PAYS = "4242424242424242"
DECLINED = "4000000000000341"
THREE_D_SECURE = "4000002760003184"
# Refused when Stripe.js sets the card up: the payment itself is never confirmed.
REFUSED_AT_SETUP = "4000000000000002"
# localstripe's Stripe.js sends its webhooks ~1 s after the call; the page polls every 1.5 s.
WEBHOOK_TIMEOUT_MS = 10_000


@pytest.fixture
def checkout_site(stripe_webhooks, live_server, settings):
    """The live site, with the checkout loading the local Stripe's Stripe.js."""
    settings.STRIPE_JS_URL = stripe_webhooks.api_base + "/js.stripe.com/v3/"
    return live_server


@pytest.fixture
def customer(transactional_db):
    return UserFactory(username="shop", password=PASSWORD)


def sign_in(page, site, user):
    page.goto(site.url + "/checkout/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/checkout/$"))
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(site.url + "/checkout/")


def pay_with(page, number):
    """Type a test card into Stripe's card field and press Pay."""
    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("75001")
    page.click("#pay")


def answer_3d_secure(page, approve: bool):
    page.click("text=Complete authentication" if approve else "text=Fail authentication")


def status_page_payment(page) -> Payment:
    expect(page).to_have_url(re.compile(r"/checkout/[0-9a-f-]{36}/$"))
    return Payment.objects.get(pk=page.url.rstrip("/").rsplit("/", 1)[1])


def expect_webhook_landed(page, payment, event_type):
    """
    The local Stripe's real, signed webhook reached our endpoint and was applied; the
    page shows it. Every journey that makes Stripe send one waits for it, so no
    delivery is still on its way when the next test registers the webhook again.
    """
    expect(page.locator("#webhook-events")).to_contain_text(event_type, timeout=WEBHOOK_TIMEOUT_MS)
    event = WebhookEvent.objects.get(type=event_type, object_id=payment.stripe_payment_intent_id)
    assert event.outcome == WebhookEvent.Outcome.PROCESSED


def test_paying_with_a_card_that_pays(page, checkout_site, customer, screenshot):
    """4242…: the status page says paid, Stripe's webhook lands, and Stripe and our database agree."""
    sign_in(page, checkout_site, customer)
    page.check("text=Coffee beans, 1 kg")

    pay_with(page, PAYS)

    payment = status_page_payment(page)
    expect(page.locator("#order")).to_have_attribute("data-status", "succeeded")
    expect_webhook_landed(page, payment, "payment_intent.succeeded")
    expect(page.locator(".status")).to_contain_text("Paid")
    screenshot("checkout-paid")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert (payment.user, payment.amount, payment.currency) == (customer, 2400, "usd")
    assert stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["status"] == "succeeded"


def test_a_declined_card(page, checkout_site, customer, screenshot):
    """4000…0341: the page shows Stripe's decline and the payment is failed."""
    sign_in(page, checkout_site, customer)
    page.check("text=Another amount")
    page.fill("#amount", "12.5")
    page.select_option("#currency", "eur")

    pay_with(page, DECLINED)

    payment = status_page_payment(page)
    expect(page.locator("#order")).to_have_attribute("data-status", "failed")
    expect(page.locator("#failure")).to_contain_text("Your card was declined.")
    expect_webhook_landed(page, payment, "payment_intent.payment_failed")
    screenshot("checkout-declined")
    payment.refresh_from_db()
    assert (payment.status, payment.amount, payment.currency) == (Payment.Status.FAILED, 1250, "eur")
    assert payment.failure_message == "Your card was declined."


def test_3d_secure_approved(page, checkout_site, customer, screenshot):
    """
    4000…3184 with the challenge approved: Stripe charges the card, and the status page,
    waiting in `requires_action`, turns to paid when Stripe's webhook lands.
    localstripe challenges twice: when the card is set up, then for the payment.
    """
    sign_in(page, checkout_site, customer)

    pay_with(page, THREE_D_SECURE)
    answer_3d_secure(page, approve=True)  # setting the card up
    expect(page.locator("#message")).to_contain_text("3-D Secure")
    expect(page.locator("text=Complete authentication")).to_be_visible()
    screenshot("checkout-3ds-challenge")
    answer_3d_secure(page, approve=True)  # the payment

    payment = status_page_payment(page)
    expect(page.locator("#order")).to_have_attribute("data-status", "succeeded", timeout=WEBHOOK_TIMEOUT_MS)
    expect_webhook_landed(page, payment, "payment_intent.succeeded")
    screenshot("checkout-3ds-approved")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


def test_3d_secure_refused(page, checkout_site, customer, screenshot):
    """4000…3184 with the payment's challenge refused: nothing is charged, and the payment is canceled."""
    sign_in(page, checkout_site, customer)

    pay_with(page, THREE_D_SECURE)
    answer_3d_secure(page, approve=True)  # setting the card up
    expect(page.locator("#message")).to_contain_text("3-D Secure")
    answer_3d_secure(page, approve=False)  # the payment

    expect(page.locator("#message")).to_contain_text("You have not been charged")
    expect(page.locator("#message")).to_contain_text("failed authentication")
    screenshot("checkout-3ds-refused")
    payment = Payment.objects.get(user=customer)
    assert payment.status == Payment.Status.CANCELED
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert intent["status"] == "canceled"
    assert not intent.get("latest_charge")


def test_paying_again_after_a_reload_pays_the_same_order_once(page, checkout_site, customer, fake_stripe, screenshot):
    """
    The page keeps its idempotency key for the checkout attempt across a reload: after
    a card that could not be used, reloading and paying with another card pays the
    payment already made, instead of creating a second one.
    """
    sign_in(page, checkout_site, customer)
    pay_with(page, REFUSED_AT_SETUP)
    expect(page.locator("#message")).to_contain_text("Your card could not be used")
    screenshot("checkout-card-refused")
    first = Payment.objects.get(user=customer)

    page.reload()
    pay_with(page, PAYS)

    assert status_page_payment(page) == first
    expect(page.locator("#order")).to_have_attribute("data-status", "succeeded")
    expect_webhook_landed(page, first, "payment_intent.succeeded")
    assert Payment.objects.filter(user=customer).count() == 1
    assert len(fake_stripe.list("payment_intents")) == 1


def test_an_amount_below_stripes_minimum_is_refused_before_any_payment(page, checkout_site, customer, fake_stripe):
    """Our API's 400 is shown as it is, and nothing exists here or at Stripe."""
    sign_in(page, checkout_site, customer)
    page.check("text=Another amount")
    page.fill("#amount", "0.10")

    pay_with(page, PAYS)

    expect(page.locator("#message")).to_contain_text("At least 50 ($0.50) for usd.")
    assert not Payment.objects.filter(user=customer).exists()
    assert fake_stripe.list("payment_intents") == []


@pytest.fixture
def support(transactional_db):
    """Support staff as `create_demo_users` makes them."""
    return UserFactory(username="support", is_staff=True, is_superuser=True, password=PASSWORD)


def test_support_refunds_the_paid_order_in_the_admin_and_the_customer_sees_it(
    page, browser, checkout_site, customer, support, screenshot
):
    """
    The last link of the chain: the customer pays, support refunds the whole order
    from the payment's page in the admin, and the customer's open status page turns
    to refunded by itself.
    """
    sign_in(page, checkout_site, customer)
    pay_with(page, PAYS)
    payment = status_page_payment(page)
    expect_webhook_landed(page, payment, "payment_intent.succeeded")

    staff_context = browser.new_context()
    try:
        admin = staff_context.new_page()
        admin.goto(f"{checkout_site.url}/admin/payments/payment/{payment.id}/change/")
        admin.fill("#id_username", support.username)
        admin.fill("#id_password", PASSWORD)
        admin.click("input[type=submit]")
        admin.click("text=Refund…")
        expect(admin.locator("#id_amount")).to_have_value("24.00")  # all that is left, by default
        admin.select_option("#id_reason", "requested_by_customer")
        admin.fill("#id_note", "Order returned")
        admin.click("#review-refund")
        admin.click("#confirm-refund")
        expect(admin.locator(".messagelist")).to_contain_text("Refund of $24.00 created")
    finally:
        staff_context.close()

    expect(page.locator("#order")).to_have_attribute("data-status", "refunded")
    expect(page.locator("#refunds")).to_contain_text("$24.00")
    screenshot("checkout-refunded")
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (Payment.Status.REFUNDED, 2400)
    assert payment.refunds.get().created_by == support


def test_authorize_in_the_checkout_capture_in_the_admin_and_the_order_page_shows_it(
    page, browser, checkout_site, customer, support, screenshot
):
    """
    Authorize only: the card is authorized at checkout and nothing is charged (the
    order page says so); support captures part of it from the payment's page in the
    admin, and the customer's open order page turns to paid, showing what was
    charged and what was released.
    """
    sign_in(page, checkout_site, customer)
    page.check("text=Cast-iron teapot")
    page.check("#authorize-only")
    pay_with(page, PAYS)

    payment = status_page_payment(page)
    expect(page.locator("#order")).to_have_attribute("data-status", "requires_capture")
    expect(page.locator("#authorized-amount")).to_contain_text("£55.00, not charged yet")
    expect(page.locator("#card")).to_contain_text("visa ending in 4242")
    screenshot("checkout-authorized")

    staff_context = browser.new_context()
    try:
        admin = staff_context.new_page()
        admin.goto(f"{checkout_site.url}/admin/payments/payment/{payment.id}/change/")
        admin.fill("#id_username", support.username)
        admin.fill("#id_password", PASSWORD)
        admin.click("input[type=submit]")
        expect(admin.locator("text=Capture…")).to_be_visible()
        admin.screenshot(path=str(ARTIFACTS / "admin-authorized-payment.png"), full_page=True)
        admin.click("text=Capture…")
        expect(admin.locator("#id_amount")).to_have_value("55.00")  # all that is authorized, by default
        admin.fill("#id_amount", "50")
        admin.click("#review-capture")
        expect(admin.locator("#capture-confirmation")).to_contain_text("£5.00")
        admin.screenshot(path=str(ARTIFACTS / "admin-capture-review.png"), full_page=True)
        admin.click("#confirm-capture")
        expect(admin.locator(".messagelist")).to_contain_text("Captured £50.00")
        admin.screenshot(path=str(ARTIFACTS / "admin-captured.png"), full_page=True)
    finally:
        staff_context.close()

    expect(page.locator("#order")).to_have_attribute("data-status", "succeeded", timeout=WEBHOOK_TIMEOUT_MS)
    expect(page.locator("#charged-amount")).to_contain_text("£50.00 (£5.00 of the authorization released")
    # The local Stripe tells of the capture by webhook too: it lands, and changes nothing more.
    expect_webhook_landed(page, payment, "payment_intent.succeeded")
    screenshot("checkout-captured")
    payment.refresh_from_db()
    assert (payment.status, payment.amount, payment.amount_received) == (Payment.Status.SUCCEEDED, 5500, 5000)
    assert not payment.refunds.exists()
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 5000)
