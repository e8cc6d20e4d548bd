"""
The support desk and authorizations: Capture (all or part) and Void on the payment's
page for staff holding `payments.capture_payment`, through the API's services,
against the local Stripe; the dashboard's authorizations expiring within 24 hours;
the shopper found by order reference, email and card; payments in a currency we
know nothing of shown like any other.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import PaymentFactory, authorized_payment
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory
from webhooks.tests.factories import payment_intent_event, receive_and_apply

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def capturer(support_viewer):
    """Support staff who may look at everything, and capture or void (`payments.capture_payment`)."""
    support_viewer.user_permissions.add(Permission.objects.get(codename="capture_payment"))
    return support_viewer


@pytest.fixture
def desk(client, capturer):
    client.force_login(capturer)
    return client


@pytest.fixture
def authorized(owner_api, fake_stripe):
    return authorized_payment(owner_api, amount=10_000)


def page(payment) -> str:
    return reverse("admin:payments_payment_change", args=[payment.pk])


def capture_url(payment) -> str:
    return reverse("admin:payments_payment_capture", args=[payment.pk])


def void_url(payment) -> str:
    return reverse("admin:payments_payment_void", args=[payment.pk])


def token_of(response) -> str:
    return re.search(r'name="token" value="([0-9a-f]+)"', response.content.decode()).group(1)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_the_buttons_show_for_an_authorized_payment_and_staff_who_may_capture(desk, authorized):
    body = desk.get(page(authorized)).content.decode()

    assert "Capture…" in body and "Void…" in body
    assert "$100.00" in body and "Visa •••• 4242" in body


@pytest.mark.django_db
def test_staff_without_the_permission_see_no_button_and_get_403(client, support_refunder, authorized):
    client.force_login(support_refunder)

    assert "Capture…" not in client.get(page(authorized)).content.decode()
    assert client.get(capture_url(authorized)).status_code == 403
    assert client.post(void_url(authorized), {"confirm": "1"}).status_code == 403
    assert stripe_gateway.payment_intent_retrieve(authorized.stripe_payment_intent_id)["status"] == "requires_capture"


@pytest.mark.django_db
def test_a_full_capture_offers_all_reviews_then_captures_once(desk, authorized, fake_stripe):
    form = desk.get(capture_url(authorized))
    assert 'value="100.00"' in form.content.decode()
    token = token_of(form)

    review = desk.post(capture_url(authorized), {"amount": "100.00", "token": token})
    assert "$100.00</strong> will be taken" in review.content.decode()
    assert stripe_gateway.payment_intent_retrieve(authorized.stripe_payment_intent_id)["status"] == "requires_capture"

    done = desk.post(capture_url(authorized), {"amount": "100.00", "token": token, "confirm": "1"})
    again = desk.post(capture_url(authorized), {"amount": "100.00", "token": token, "confirm": "1"})

    assert messages_of(done) == ["Captured $100.00."]
    assert "already made" in messages_of(again)[-1]
    authorized.refresh_from_db()
    assert (authorized.status, authorized.amount_received) == (Payment.Status.SUCCEEDED, 10_000)
    entry = LogEntry.objects.get(object_id=str(authorized.pk))
    assert (entry.action_flag, entry.get_change_message()) == (CHANGE, "Captured $100.00 of $100.00.")


@pytest.mark.django_db
def test_a_partial_capture_says_what_is_released_and_takes_only_that_part(desk, authorized, fake_stripe):
    token = token_of(desk.get(capture_url(authorized)))

    review = desk.post(capture_url(authorized), {"amount": "60", "token": token})
    assert "<strong>$40.00</strong>, will be released" in review.content.decode()
    desk.post(capture_url(authorized), {"amount": "60", "token": token, "confirm": "1"})

    authorized.refresh_from_db()
    assert (authorized.amount_received, authorized.uncaptured_amount) == (6000, 4000)
    assert fake_stripe.list("refunds") == []
    assert "$40.00 released uncaptured" in desk.get(page(authorized)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["100.01", "0", "12.345", "lots"])
def test_an_amount_outside_what_is_authorized_is_refused_on_the_form(desk, authorized, amount):
    response = desk.post(capture_url(authorized), {"amount": amount, "token": "a" * 32, "confirm": "1"})

    assert response.status_code == 200 and "errornote" in response.content.decode()
    assert stripe_gateway.payment_intent_retrieve(authorized.stripe_payment_intent_id)["status"] == "requires_capture"


@pytest.mark.django_db
def test_a_void_releases_the_authorization_and_refunds_nothing(desk, authorized, fake_stripe):
    confirmation = desk.get(void_url(authorized))
    assert "nothing is refunded" in confirmation.content.decode()

    done = desk.post(void_url(authorized), {"confirm": "1"})

    assert "voided" in messages_of(done)[0]
    authorized.refresh_from_db()
    assert (authorized.status, authorized.amount_received, authorized.refunded_amount) == (
        Payment.Status.CANCELED,
        0,
        0,
    )
    assert not Refund.objects.exists() and fake_stripe.list("refunds") == []
    assert LogEntry.objects.get(object_id=str(authorized.pk)).get_change_message().startswith("Voided")


@pytest.mark.django_db
def test_a_payment_no_longer_authorized_is_sent_back_to_its_page(desk, capturer):
    paid = PaidPaymentFactory()

    response = desk.get(capture_url(paid))

    assert response.status_code == 302 and response["Location"] == page(paid)
    assert "Only an authorized payment can be captured" in messages_of(response)[0]
    assert "Capture…" not in desk.get(page(paid)).content.decode()


@pytest.mark.django_db
def test_the_dashboard_lists_authorizations_expiring_within_24_hours(desk):
    now = timezone.now()
    soon = PaymentFactory(
        status=Payment.Status.REQUIRES_CAPTURE,
        capture_before=now + timedelta(hours=5),
        order_reference="ORDER-SOON",
        customer_email="soon@example.com",
    )
    PaymentFactory(status=Payment.Status.REQUIRES_CAPTURE, capture_before=now + timedelta(days=3))
    PaidPaymentFactory(capture_before=now + timedelta(hours=1))

    response = desk.get(reverse("admin:payments_dashboard"))

    assert response.context["figures"].expiring_count == 1
    assert [row["payment"] for row in response.context["expiring"]] == [soon]
    body = response.content.decode()
    assert "ORDER-SOON" in body and "soon@example.com" in body
    listed = desk.get(reverse("admin:payments_payment_changelist"), {"capture": "expiring"})
    assert [p.pk for p in listed.context["cl"].result_list] == [soon.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["ORDER-1001", "Ana@Example.com", "4242"])
def test_the_shopper_is_found_by_order_reference_email_or_card(desk, term):
    wanted = PaymentFactory(order_reference="ORDER-1001", customer_email="ana@example.com", card_last4="4242")
    PaymentFactory(order_reference="ORDER-1002", customer_email="bob@example.com", card_last4="1111")

    response = desk.get(reverse("admin:payments_payment_changelist"), {"q": term})

    assert [p.pk for p in response.context["cl"].result_list] == [wanted.pk]


@pytest.mark.django_db
def test_a_payment_in_a_currency_we_know_nothing_of_has_every_page(client, superuser):
    """Adopted from Stripe in "zzz" (and in kwd, three decimals): list, page, refund form and dashboard answer 200."""
    client.force_login(superuser)
    for currency in ("zzz", "kwd"):
        receive_and_apply(payment_intent_event("payment_intent.succeeded", amount=7770, currency=currency))
    unknown = Payment.objects.get(currency="zzz")

    pages = [
        reverse("admin:payments_payment_changelist"),
        reverse("admin:payments_payment_changelist") + "?currency__exact=kwd",
        page(unknown),
        reverse("admin:payments_payment_refund", args=[unknown.pk]),
        reverse("admin:payments_dashboard") + "?currency=zzz",
        reverse("admin:payments_payment_export"),
    ]

    assert {url: client.get(url).status_code for url in pages} == dict.fromkeys(pages, 200)
    assert "ZZZ 77.70" in client.get(page(unknown)).content.decode()
    assert 'value="77.70"' in client.get(pages[3]).content.decode()
