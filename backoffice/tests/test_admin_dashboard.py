"""The support desk's dashboard: its figures on a known data set, and links to what needs attention."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from backoffice.dashboard import dashboard_figures
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import payment_intent_event, post_event

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

DASHBOARD = "/admin/payments/payment/dashboard/"


@pytest.fixture
def known_data(db):
    """Last 30 days: 4 paid (3 usd, 1 of them partly refunded; 1 jpy), 1 failed, 1 canceled, 1 still open."""
    recent = timezone.now() - timedelta(minutes=5)
    for amount in (2000, 3000, 4000):
        PaidPaymentFactory(currency="usd", amount=amount, created_at=recent)
    partly = Payment.objects.get(amount=4000)
    partly.set_refunded_amount(500)
    partly.save()
    PaidPaymentFactory(currency="jpy", amount=900, created_at=recent)
    PaymentFactory(status=Payment.Status.FAILED, created_at=recent)
    PaymentFactory(status=Payment.Status.CANCELED, created_at=recent)
    PaymentFactory(status=Payment.Status.REQUIRES_PAYMENT_METHOD, created_at=recent)
    # Older than 30 days: in no figure.
    PaidPaymentFactory(currency="usd", amount=99_000, created_at=timezone.now() - timedelta(days=31))

    an_hour_ago = timezone.now() - timedelta(hours=1, minutes=1)
    stuck = RefundFactory(status=Refund.Status.PENDING, created_at=an_hour_ago, note="stuck one")
    RefundFactory(status=Refund.Status.PENDING, note="just sent")
    RefundFactory(status=Refund.Status.SUCCEEDED, created_at=an_hour_ago)
    for n, outcome in enumerate(["failed", "failed", "processed"]):
        WebhookEvent.objects.create(stripe_event_id=f"evt_{n}", type="charge.refunded", payload={}, outcome=outcome)
    for n, status in enumerate(["needs_response", "under_review", "won"]):
        Dispute.objects.create(stripe_dispute_id=f"dp_{n}", payment=partly, amount=100, status=status)
    return stuck


@pytest.mark.django_db
def test_figures_on_a_known_data_set(known_data):
    figures = dashboard_figures(now=timezone.now())

    # The refund factories' own payments (paid, created now) are in the last 30 days too.
    assert figures.paid == 4 + 3
    assert figures.with_outcome == 4 + 3 + 2
    assert figures.success_rate == 7 / 9
    assert figures.refunded == 1
    assert figures.currency == "usd"
    assert figures.volume == 2000 + 3000 + 4000 + 3 * 2000
    # By amount: $5.00 refunded of $150.00 received, not 1 payment of 7.
    assert figures.refunded_volume == 500
    assert figures.refund_rate == 500 / 15000
    assert len(figures.bars) == 30
    assert sum(bar.total for bar in figures.bars) == figures.volume
    assert (figures.failed_webhooks, figures.stuck_refunds, figures.open_disputes) == (2, 1, 2)


@pytest.mark.django_db
def test_volume_is_per_currency(known_data):
    figures = dashboard_figures(now=timezone.now(), currency="jpy")

    assert figures.volume == 900
    assert figures.currencies == ["usd", "jpy"]


@pytest.mark.django_db
def test_dashboard_page_draws_the_chart_on_the_server(client, support_viewer, known_data):
    client.force_login(support_viewer)

    response = client.get(DASHBOARD)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in body and body.count('class="bar"') == 30
    assert "<script" not in body.split("<!-- Content -->")[1]
    assert "$150.00" in body  # the usd volume
    assert "77.8%" in body and "3.3%" in body
    assert "$145.00" in body  # net: $150.00 less the $5.00 refunded


@pytest.mark.django_db
def test_attention_counts_link_to_the_filtered_lists(client, support_viewer, known_data):
    client.force_login(support_viewer)
    response = client.get(DASHBOARD)

    stuck = client.get(response.context["stuck_refunds_url"])
    disputes = client.get(response.context["open_disputes_url"])
    webhooks = client.get(response.context["failed_webhooks_url"])

    assert [r.note for r in stuck.context["cl"].result_list] == ["stuck one"]
    assert sorted(e.stripe_event_id for e in webhooks.context["cl"].result_list) == ["evt_0", "evt_1"]
    assert sorted(d.status for d in disputes.context["cl"].result_list) == ["needs_response", "under_review"]


@pytest.mark.django_db
def test_admin_index_links_to_the_dashboard(client, support_viewer):
    client.force_login(support_viewer)

    assert reverse("admin:payments_dashboard") in client.get("/admin/").content.decode()


@pytest.fixture
def queued_work(client):
    """Two events stored and not applied yet (their jobs queued), and one job that ended in an error."""
    for intent_id in ("pi_waiting_1", "pi_waiting_2", "pi_broken"):
        post_event(client, payment_intent_event("payment_intent.succeeded", intent_id=intent_id), apply=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM procrastinate_jobs WHERE lock = 'pi_broken'")
        (broken,) = cursor.fetchone()
        cursor.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", [broken])
        cursor.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", [broken])
        # The first event was queued a while ago: no worker has come for it.
        cursor.execute(
            "UPDATE procrastinate_events SET at = now() - interval '15 minutes' "
            "WHERE type = 'deferred' AND job_id = (SELECT id FROM procrastinate_jobs WHERE lock = 'pi_waiting_1')"
        )
    return broken


@pytest.mark.django_db
def test_the_background_queue_is_on_the_dashboard(queued_work):
    figures = dashboard_figures(now=timezone.now())

    assert figures.pending_webhooks == 3
    assert (figures.jobs.pending, figures.jobs.failed) == (2, 1)
    assert 15 * 60 <= figures.jobs.oldest_pending_seconds < 16 * 60


@pytest.mark.django_db
def test_the_dashboard_links_to_the_waiting_events_and_the_failed_jobs(client, superuser, queued_work):
    client.force_login(superuser)

    response = client.get(DASHBOARD)

    body = response.content.decode()
    assert "Jobs pending" in body and "has waited 15 min" in body
    failed_jobs = client.get(response.context["failed_jobs_url"])
    assert [job.id for job in failed_jobs.context["cl"].result_list] == [queued_work]
    waiting = client.get(response.context["pending_webhooks_url"])
    assert len(waiting.context["cl"].result_list) == 3


@pytest.mark.django_db
def test_a_small_refund_of_a_payment_is_a_small_refund_rate():
    """A $5.50 refund of a $24.00 payment is a 22.9% refund rate, not 100%."""
    payment = PaidPaymentFactory(amount=2400, created_at=timezone.now() - timedelta(minutes=1))
    payment.set_refunded_amount(550)
    payment.save()

    figures = dashboard_figures(now=timezone.now())

    assert figures.refund_rate == 550 / 2400
    assert (figures.volume, figures.refunded_volume, figures.net_volume) == (2400, 550, 1850)


@pytest.mark.django_db
def test_net_volume_is_gross_less_refunds_less_lost_disputes(client, support_viewer):
    """Money a lost dispute took is out of the net; won and open disputes are not."""
    recent = timezone.now() - timedelta(minutes=1)
    lost_on = PaidPaymentFactory(amount=10_000, created_at=recent)
    won_on = PaidPaymentFactory(amount=5000, created_at=recent)
    refunded = PaidPaymentFactory(amount=3000, created_at=recent)
    refunded.set_refunded_amount(1000)
    refunded.save()
    Dispute.objects.create(stripe_dispute_id="dp_lost", payment=lost_on, amount=10_000, status="lost")
    Dispute.objects.create(stripe_dispute_id="dp_won", payment=won_on, amount=5000, status="won")
    Dispute.objects.create(stripe_dispute_id="dp_open", payment=won_on, amount=5000, status="needs_response")
    # Another currency's lost dispute is not in the usd figures.
    Dispute.objects.create(
        stripe_dispute_id="dp_eur",
        payment=PaidPaymentFactory(amount=700, currency="eur", created_at=recent),
        amount=700,
        status="lost",
    )

    figures = dashboard_figures(now=timezone.now(), currency="usd")

    assert figures.volume == 18_000
    assert figures.disputes_lost_volume == 10_000
    assert figures.net_volume == 18_000 - 1000 - 10_000
    client.force_login(support_viewer)
    body = client.get(DASHBOARD, {"currency": "usd"}).content.decode()
    assert "$70.00" in body and "&minus;$100.00" in body


@pytest.mark.django_db
def test_disputes_with_evidence_due_within_7_days_link_to_their_list(client, support_viewer):
    payment = PaidPaymentFactory()
    now = timezone.now()
    for name, status, due_in in [
        ("dp_soon", "needs_response", timedelta(days=2)),
        ("dp_later", "needs_response", timedelta(days=9)),
        ("dp_closed", "won", timedelta(days=1)),
        ("dp_review", "warning_needs_response", timedelta(days=6)),
    ]:
        Dispute.objects.create(
            stripe_dispute_id=name, payment=payment, amount=100, status=status, evidence_due_by=now + due_in
        )
    client.force_login(support_viewer)

    response = client.get(DASHBOARD)
    listed = client.get(response.context["evidence_due_url"])

    assert response.context["figures"].evidence_due == 2
    assert sorted(d.stripe_dispute_id for d in listed.context["cl"].result_list) == ["dp_review", "dp_soon"]


@pytest.mark.django_db
def test_cards_link_only_to_lists_the_user_may_open(client, support_viewer):
    """Support staff see the failing endpoints' count, but no link to a page they may not open."""
    client.force_login(support_viewer)

    response = client.get(DASHBOARD)

    assert response.context["failing_endpoints_url"] is None
    assert response.context["failed_jobs_url"] is None
    assert response.context["stuck_refunds_url"] is not None
