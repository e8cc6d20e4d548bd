"""
A payment's page in the support desk tells its whole story: a title a person
reads, the shopper with their other payments, the card, the capture state, one
timeline newest first (Stripe's events, refunds, disputes, captures,
notifications, staff actions with who and why), Stripe's dashboard links, and
every time with its time zone.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from notifications.tests.factories import EndpointFactory
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def page_url(payment) -> str:
    return reverse("admin:payments_payment_change", args=[payment.pk])


@pytest.fixture
def viewer_client(client, support_viewer):
    client.force_login(support_viewer)
    return client


def timeline_rows(body: str) -> list[str]:
    """The timeline's rows as text, top to bottom."""
    table = body.split('id="timeline"')[1].split("</table>")[0]
    rows = re.findall(r"<tr class=\"timeline-entry.*?</tr>", table, flags=re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in rows]


@pytest.fixture
def story(db):
    """A $24.00 payment, partially refunded, disputed, notified, with Stripe events and a staff action."""
    EndpointFactory(url="https://shop.example.com/hooks")
    now = timezone.now()
    payment = PaidPaymentFactory(
        amount=2400,
        customer_email="ana@example.com",
        customer_name="Ana Lima",
        card_brand="visa",
        card_last4="4242",
        stripe_payment_intent_id="pi_3Story",
        created_at=now - timedelta(hours=5),
    )
    WebhookEvent.objects.create(
        stripe_event_id="evt_old",
        type="payment_intent.created",
        payload={"data": {"object": {"id": "pi_3Story"}}},
        payment=payment,
        object_id="pi_3Story",
        received_at=now - timedelta(hours=4),
    )
    WebhookEvent.objects.create(
        stripe_event_id="evt_charge",
        type="charge.succeeded",
        payload={"data": {"object": {"id": "ch_3Story", "payment_intent": "pi_3Story"}}},
        payment=payment,
        object_id="ch_3Story",
        received_at=now - timedelta(hours=3),
    )
    staff = UserFactory(username="rita", is_staff=True)
    refund = RefundFactory(
        payment=payment,
        amount=550,
        status="succeeded",
        stripe_refund_id="re_3Story",
        reason="requested_by_customer",
        note="Customer kept one item",
        created_by=staff,
        created_at=now - timedelta(hours=2),
    )
    payment.set_refunded_amount(550)
    payment.save()
    LogEntry.objects.log_actions(
        user_id=staff.pk,
        queryset=[refund],
        action_flag=CHANGE,
        change_message="Refunded $5.50 (requested by customer). Note: Customer kept one item",
        single_object=True,
    )
    Dispute.objects.create(
        stripe_dispute_id="dp_1Story",
        payment=payment,
        amount=2400,
        status="needs_response",
        reason="fraudulent",
        evidence_due_by=now + timedelta(days=5),
        created_at=now - timedelta(hours=1),
    )
    PaidPaymentFactory(customer_email="ana@example.com", amount=1000)
    return Payment.objects.get(pk=payment.pk)


@pytest.mark.django_db
def test_the_title_says_amount_shopper_and_status_in_words(viewer_client, story):
    body = viewer_client.get(page_url(story)).content.decode()

    assert "<h1>$24.00 from ana@example.com — Paid, partially refunded</h1>" in body
    assert "<title>$24.00 from ana@example.com — Paid, partially refunded" in body


@pytest.mark.django_db
def test_the_shopper_links_to_their_other_payments(viewer_client, story):
    body = viewer_client.get(page_url(story)).content.decode()

    assert "Ana Lima" in body and "Visa •••• 4242" in body
    link = re.search(r'href="([^"]+)" id="shopper-payments"', body).group(1)
    others = viewer_client.get(link.replace("&amp;", "&"))
    assert {p.customer_email for p in others.context["cl"].result_list} == {"ana@example.com"}
    assert len(others.context["cl"].result_list) == 2


@pytest.mark.django_db
def test_one_timeline_newest_first_of_everything_that_happened(viewer_client, story):
    rows = timeline_rows(viewer_client.get(page_url(story)).content.decode())

    times = [row.split(" UTC ")[0] for row in rows]
    kinds = [row.split(" UTC ")[1].split(" ")[0] for row in rows]
    assert times == sorted(times, reverse=True)
    assert {"Dispute", "Staff", "Refund", "Notification", "Stripe"} <= set(kinds) and kinds[-1] == "Payment"
    text = "\n".join(rows)
    assert text.index("Dispute of $24.00") < text.index("Refund of $5.50") < text.index("charge.succeeded")
    assert text.index("charge.succeeded") < text.index("payment_intent.created")
    refund_row = next(row for row in rows if "Refund of $5.50" in row)
    assert "rita" in refund_row and "Customer kept one item" in refund_row and "Refunded" in refund_row
    staff_row = next(row for row in rows if row.split(" UTC ")[1].startswith("Staff action"))
    assert "rita" in staff_row and "Refunded $5.50" in staff_row
    assert any("Storefront told: payment.refunded" in row and "shop.example.com" in row for row in rows)
    # Every time with its zone.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ", row) for row in rows)


@pytest.mark.django_db
def test_staff_captures_are_in_the_timeline(viewer_client):
    authorized = PaymentFactory(
        status=Payment.Status.REQUIRES_CAPTURE,
        capture_method=Payment.CaptureMethod.MANUAL,
        capture_before=timezone.now() + timedelta(hours=3),
    )
    LogEntry.objects.log_actions(
        user_id=UserFactory(username="cap").pk,
        queryset=[authorized],
        action_flag=CHANGE,
        change_message="Captured $20.00: the order shipped.",
        single_object=True,
    )

    body = viewer_client.get(page_url(authorized)).content.decode()

    assert any("Captured $20.00: the order shipped." in row and "cap" in row for row in timeline_rows(body))
    assert "Authorized: waiting to be captured or voided" in body
    capture_before = timezone.localtime(authorized.capture_before)
    assert f"{capture_before:%Y-%m-%d %H:%M:%S} UTC (expires within 24 h)" in body


@pytest.mark.django_db
def test_stripe_dashboard_links_follow_the_keys_mode(viewer_client, story, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_123"
    body = viewer_client.get(page_url(story)).content.decode()

    assert 'href="https://dashboard.stripe.com/test/payments/pi_3Story"' in body
    assert 'href="https://dashboard.stripe.com/test/payments/ch_3Story"' in body
    assert 'href="https://dashboard.stripe.com/test/refunds/re_3Story"' in body
    assert 'href="https://dashboard.stripe.com/test/disputes/dp_1Story"' in body
    assert 'href="https://dashboard.stripe.com/test/events/evt_charge"' in body

    settings.STRIPE_SECRET_KEY = "sk_live_123"
    body = viewer_client.get(page_url(story)).content.decode()

    assert 'href="https://dashboard.stripe.com/payments/pi_3Story"' in body
    assert "dashboard.stripe.com/test/" not in body


@pytest.mark.django_db
def test_a_payment_with_no_story_yet_says_none(viewer_client):
    payment = PaymentFactory(stripe_payment_intent_id=None, user=None)

    body = viewer_client.get(page_url(payment)).content.decode()

    assert "None (Stripe has not answered for it yet)" in body
    assert len(timeline_rows(body)) == 1  # its creation


@pytest.mark.django_db
def test_no_time_on_the_page_lacks_its_zone(viewer_client, story):
    body = viewer_client.get(page_url(story)).content.decode()

    assert re.findall(r"\d\d:\d\d(?::\d\d)? UTC", body)
    assert not re.findall(r"\d\d:\d\d(?::\d\d)?(?! UTC)[^\d:]", body.split('<div id="content"')[1].split("<footer")[0])


@pytest.mark.django_db
def test_a_capture_through_the_api_is_in_the_timeline(viewer_client):
    """The storefront captured part of an authorization (no staff involved): the timeline says what was taken."""
    captured = PaidPaymentFactory(
        amount=5500,
        amount_received=5000,
        capture_method=Payment.CaptureMethod.MANUAL,
        capture_started_at=timezone.now() - timedelta(minutes=3),
        currency="gbp",
    )

    rows = timeline_rows(viewer_client.get(page_url(captured)).content.decode())

    assert any("Capture requested" in row and "£50.00 captured of £55.00 authorized" in row for row in rows)


@pytest.mark.django_db
def test_the_refund_form_names_the_shopper_not_the_api_account(client, support_refunder, story):
    client.force_login(support_refunder)

    body = client.get(reverse("admin:payments_payment_refund", args=[story.pk])).content.decode()

    assert "Refund: $24.00 from ana@example.com — Paid, partially refunded" in body
    assert "ana@example.com (Ana Lima)" in body and "Visa •••• 4242" in body
    assert story.user.email not in body


@pytest.mark.django_db
def test_an_old_events_error_quoting_a_row_is_scrubbed_in_the_timeline(viewer_client):
    """An error stored before errors were made safe (PostgreSQL's row, a client secret) never reaches the page."""
    payment = PaymentFactory(stripe_payment_intent_id="pi_3Scrub")
    WebhookEvent.objects.create(
        stripe_event_id="evt_scrub",
        type="payment_intent.succeeded",
        payload={"data": {"object": {"id": "pi_3Scrub"}}},
        payment=payment,
        object_id="pi_3Scrub",
        outcome=WebhookEvent.Outcome.FAILED,
        error='new row violates check constraint "x"\nDETAIL:  Failing row contains (pi_3Scrub_secret_abc123, 2400).',
    )

    body = viewer_client.get(page_url(payment)).content.decode()

    assert "evt_scrub" in body and "failed" in body
    assert "Failing row" not in body and "pi_3Scrub_secret_abc123" not in body
