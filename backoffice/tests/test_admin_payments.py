"""The payments list and page in the admin: what support staff see, find and cannot change."""

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.admin_helpers import EstimatedCountPaginator
from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

CHANGELIST = "/admin/payments/payment/"


def page_url(payment) -> str:
    return reverse("admin:payments_payment_change", args=[payment.pk])


def listed_ids(response) -> set[str]:
    return {str(p.pk) for p in response.context["cl"].result_list}


@pytest.fixture
def viewer_client(client, support_viewer):
    client.force_login(support_viewer)
    return client


@pytest.mark.django_db
def test_list_shows_amounts_in_the_currency_units(viewer_client):
    """2000 usd is shown as $20.00 and 500 jpy as ¥500, with the customer's email and the status."""
    PaymentFactory(amount=2000, currency="usd", status=Payment.Status.SUCCEEDED, user__email="ann@example.com")
    PaymentFactory(amount=500, currency="jpy")

    body = viewer_client.get(CHANGELIST).content.decode()

    assert "$20.00" in body and "¥500" in body
    assert "ann@example.com" in body
    assert "succeeded" in body


@pytest.mark.django_db
def test_list_filters_by_status_currency_and_date(viewer_client):
    old = PaymentFactory(currency="eur", created_at=timezone.now() - timedelta(days=40))
    paid = PaidPaymentFactory(currency="usd")
    PaymentFactory(currency="usd", status=Payment.Status.FAILED)

    assert listed_ids(viewer_client.get(CHANGELIST, {"status__exact": "succeeded"})) == {str(paid.pk)}
    assert listed_ids(viewer_client.get(CHANGELIST, {"currency__exact": "eur"})) == {str(old.pk)}
    since = (timezone.now() - timedelta(days=7)).isoformat()
    assert str(old.pk) not in listed_ids(viewer_client.get(CHANGELIST, {"created_at__gte": since}))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identifier",
    [
        lambda p: str(p.pk),
        lambda p: p.stripe_payment_intent_id,
        lambda p: p.user.email,
        lambda p: p.user.email.upper(),
        lambda p: p.idempotency_key,
        lambda p: f"  {p.stripe_payment_intent_id} ",
    ],
    ids=["our id", "payment intent", "email", "email in capitals", "idempotency key", "pasted with spaces"],
)
def test_search_finds_the_payment_by_each_identifier(viewer_client, identifier):
    wanted = PaymentFactory(user=UserFactory(email="cust@example.com"), idempotency_key="order-4711")
    PaymentFactory.create_batch(3)

    response = viewer_client.get(CHANGELIST, {"q": identifier(wanted)})

    assert listed_ids(response) == {str(wanted.pk)}


@pytest.mark.django_db
def test_search_is_exact_not_a_substring_scan(viewer_client):
    """A fragment finds nothing: every search is an indexed exact match."""
    PaymentFactory(stripe_payment_intent_id="pi_3Abcdef")

    assert listed_ids(viewer_client.get(CHANGELIST, {"q": "pi_3Abc"})) == set()


@pytest.mark.django_db
def test_list_takes_the_same_number_of_queries_whatever_its_size(viewer_client, django_assert_num_queries):
    """Users, filters and counts are fetched once per page, not once per row."""
    PaymentFactory.create_batch(3)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(CHANGELIST)
    PaymentFactory.create_batch(40)
    PaymentFactory.create_batch(5, user=None)

    with django_assert_num_queries(len(few.captured_queries)):
        viewer_client.get(CHANGELIST)


@pytest.mark.django_db
def test_list_never_counts_the_whole_table(viewer_client, monkeypatch):
    """Past the exact-count limit the count is the planner's estimate, and the page says "about"."""
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    PaymentFactory.create_batch(8)

    with CaptureQueriesContext(connection) as queries:
        response = viewer_client.get(CHANGELIST)

    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if 'SELECT COUNT(*) AS "__count" FROM "payments_payment"' in s]
    assert response.context["cl"].paginator.estimated
    assert "about" in response.content.decode()


@pytest.mark.django_db
def test_payment_cannot_be_added_changed_or_deleted(client, superuser):
    """Even a superuser: money fields do not move through a POST, and there is no add or delete."""
    payment = PaidPaymentFactory(amount=2000)
    client.force_login(superuser)

    changed = client.post(
        page_url(payment),
        {"amount": "1", "refunded_amount": "2000", "status": "refunded", "currency": "jpy"},
    )
    added = client.post(reverse("admin:payments_payment_add"), {"amount": "100", "currency": "usd"})
    deleted = client.post(reverse("admin:payments_payment_delete", args=[payment.pk]), {"post": "yes"})

    assert changed.status_code == 403
    assert added.status_code == 403
    assert deleted.status_code == 403
    payment.refresh_from_db()
    assert (payment.amount, payment.refunded_amount, payment.status, payment.currency) == (2000, 0, "succeeded", "usd")
    assert Payment.objects.count() == 1
    page = client.get(page_url(payment)).content.decode()
    assert 'name="amount"' not in page and 'name="status"' not in page


@pytest.mark.django_db
def test_payment_page_takes_a_constant_number_of_queries(viewer_client, django_assert_num_queries):
    # Enough received for its seven refunds: the database holds refunds within what was received.
    payment = PaidPaymentFactory(amount=10_000)
    RefundFactory(payment=payment)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(page_url(payment))
    RefundFactory.create_batch(6, payment=payment, created_by=UserFactory())
    for n in range(5):
        WebhookEvent.objects.create(stripe_event_id=f"evt_{n}", type="charge.refunded", payload={}, payment=payment)

    with django_assert_num_queries(len(few.captured_queries)):
        viewer_client.get(page_url(payment))


@pytest.mark.django_db
def test_csv_export_streams_the_filtered_list(viewer_client):
    """The export has the list's filters and search, and defuses spreadsheet formulas."""
    wanted = PaidPaymentFactory(amount=1234, currency="eur", description="=HYPERLINK(evil)")
    PaymentFactory(status=Payment.Status.FAILED)

    response = viewer_client.get(reverse("admin:payments_payment_export"), {"status__exact": "succeeded"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["id"] for row in rows] == [str(wanted.pk)]
    assert rows[0]["amount"] == "1234" and rows[0]["amount_display"] == "€12.34"
    assert rows[0]["description"] == "'=HYPERLINK(evil)"
    assert rows[0]["customer_email"] == wanted.user.email


@pytest.mark.django_db
def test_list_links_to_the_export_with_its_filters(viewer_client):
    body = viewer_client.get(CHANGELIST, {"status__exact": "failed", "q": "pi_x"}).content.decode()

    link = re.search(r'href="([^"]*)" class="exportlink"', body).group(1)
    path, _, query = html.unescape(link).partition("?")
    assert path == reverse("admin:payments_payment_export")
    assert parse_qs(query) == {"status__exact": ["failed"], "q": ["pi_x"]}


@pytest.mark.django_db
def test_the_date_range_filter_takes_both_days_whole(viewer_client):
    """From 3 to 5 March lists what was created on the 3rd, 4th and 5th (all day, UTC), nothing else."""
    day = lambda d, h=12, m=0: datetime(2026, 3, d, h, m, tzinfo=UTC)  # noqa: E731
    before = PaymentFactory(created_at=day(2, 23, 59))
    first = PaymentFactory(created_at=day(3, 0, 0))
    last = PaymentFactory(created_at=day(5, 23, 59))
    after = PaymentFactory(created_at=day(6, 0, 0))

    both = listed_ids(viewer_client.get(CHANGELIST, {"created_from": "2026-03-03", "created_to": "2026-03-05"}))
    from_only = listed_ids(viewer_client.get(CHANGELIST, {"created_from": "2026-03-06"}))
    to_only = listed_ids(viewer_client.get(CHANGELIST, {"created_to": "2026-03-02"}))

    assert both == {str(first.pk), str(last.pk)}
    assert from_only == {str(after.pk)}
    assert to_only == {str(before.pk)}


@pytest.mark.django_db
def test_the_date_range_filter_keeps_the_search_and_other_filters(viewer_client):
    PaymentFactory(status="failed", order_reference="ORDER-7")
    response = viewer_client.get(CHANGELIST, {"q": "ORDER-7", "status__exact": "failed"})

    body = response.content.decode()
    assert 'id="date-range-filter"' in body
    assert '<input type="hidden" name="q" value="ORDER-7">' in body
    assert '<input type="hidden" name="status__exact" value="failed">' in body


@pytest.mark.django_db
def test_a_bad_date_lists_nothing_rather_than_everything(viewer_client):
    PaymentFactory()

    response = viewer_client.get(CHANGELIST, {"created_from": "2026-02-31"})

    assert response.status_code == 200 and listed_ids(response) == set()


@pytest.mark.django_db
def test_statuses_are_words_in_a_coloured_badge(viewer_client):
    payment = PaidPaymentFactory(amount=2400)
    payment.set_refunded_amount(550)
    payment.save()
    RefundFactory(payment=payment, status="pending")

    payments = viewer_client.get(CHANGELIST).content.decode()
    refunds = viewer_client.get("/admin/refunds/refund/").content.decode()

    assert re.search(
        r'<span class="badge status-partially_refunded" style="background: #[0-9a-f]{6}"[^>]*>'
        r"Paid, partially refunded</span>",
        payments,
    )
    assert re.search(
        r'<span class="badge status-pending" style="background: #[0-9a-f]{6}"[^>]*>Pending at Stripe<', refunds
    )


@pytest.mark.django_db
@pytest.mark.parametrize("url", [CHANGELIST, "/admin/refunds/refund/", "/admin/payments/dispute/"])
def test_empty_lists_say_none(viewer_client, url):
    body = viewer_client.get(url).content.decode()

    assert '<p class="empty-list" id="empty-list">None.</p>' in body
