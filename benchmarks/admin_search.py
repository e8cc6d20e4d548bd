"""
The support desk's search box and date-range filter at a million payments, each kind
of search beside a stock ModelAdmin searching the same columns.

    createdb -h 127.0.0.1 -U postgres paymentsite_admin_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/paymentsite_admin_bench \\
        .venv/bin/python -m benchmarks.admin_search [--payments 1000000] [--runs 5]

Uses benchmarks/admin_pages.py's database and seed (`seed_demo_data`, added to
when the database holds fewer payments than asked). For each kind of search a
customer or Stripe gives (our id and its first 8 characters, the PaymentIntent,
charge, refund and dispute ids, the order reference, the shopper's email, an
amount as typed, the card's last 4) and for a from/to date range, it requests
the payment list through Django's test client as a signed-in superuser, from
our PaymentAdmin and from a stock `ModelAdmin` whose `search_fields` name the
same columns (Django's default: `icontains` on each), and prints the median
time, the number of SQL queries, and how many payments match. A charge id is
known only through Stripe's events: one `charge.succeeded` event for the payment
searched is added when missing.
"""

import argparse
import statistics
import time
from datetime import datetime, timedelta
from urllib.parse import urlencode

import benchmarks.in_process  # noqa: F401  (sets Django up: before any model)

# isort: split

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from backoffice.search import search_payments
from payments.currencies import format_amount
from payments.models import Dispute, Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent


class StockSearchAdmin(admin.ModelAdmin):
    """A stock ModelAdmin searching the columns the desk's box reads (Django's default lookup, icontains)."""

    list_display = ("id", "stripe_payment_intent_id", "customer_email", "amount", "currency", "status", "created_at")
    list_filter = ("status", "currency", "created_at")
    search_fields = (
        "id",
        "stripe_payment_intent_id",
        "order_reference",
        "customer_email",
        "user__email",
        "card_last4",
        "refunds__stripe_refund_id",
        "disputes__stripe_dispute_id",
    )
    change_list_template = "admin/change_list.html"


stock_site = admin.AdminSite(name="stocksearch")
stock_site.register(Payment, StockSearchAdmin)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("stock/", stock_site.urls),
]


def measure(client: Client, url: str, *, runs: int) -> tuple[float, int]:
    """Median milliseconds over `runs` requests (after one to warm caches) and the queries of one."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    timings = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), len(queries.captured_queries)


def day_start(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.get_current_timezone())


def searches() -> list[tuple[str, str, Payment]]:
    """(kind, text typed, the payment it must find) for each kind of search."""
    refund = Refund.objects.exclude(stripe_refund_id=None).select_related("payment").first()
    dispute = Dispute.objects.select_related("payment").first()
    payment = refund.payment
    charge_id = f"ch_bench{payment.pk.hex[:20]}"
    WebhookEvent.objects.get_or_create(
        stripe_event_id=f"evt_bench{payment.pk.hex[:20]}",
        defaults={
            "type": "charge.succeeded",
            "payload": {"data": {"object": {"id": charge_id, "payment_intent": payment.stripe_payment_intent_id}}},
            "object_id": charge_id,
            "payment": payment,
            "outcome": WebhookEvent.Outcome.PROCESSED,
        },
    )
    paid = Payment.objects.filter(status=Payment.Status.SUCCEEDED, currency="usd").exclude(card_last4="").first()
    return [
        ("our id", str(payment.pk), payment),
        ("order page's 8 characters", f"Order {str(payment.pk)[:8]}", payment),
        ("PaymentIntent id", payment.stripe_payment_intent_id, payment),
        ("charge id", charge_id, payment),
        ("refund id", refund.stripe_refund_id, payment),
        ("dispute id", dispute.stripe_dispute_id, dispute.payment),
        ("order reference", payment.order_reference, payment),
        ("shopper email (capitals)", payment.customer_email.upper(), payment),
        ("amount as typed", format_amount(paid.amount, paid.currency), paid),
        ("amount, no currency", f"{paid.amount / 100:.2f}", paid),
        ("card last 4", paid.card_last4, paid),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--skip-stock", action="store_true", help="time ours only (the stock admin scans the table: minutes)"
    )
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    have = Payment.objects.count()
    if have < args.payments:
        print(f"Seeding {args.payments - have:,} payments (this database has {have:,})...")
        call_command("seed_demo_data", payments=args.payments - have, refunds=(args.payments - have) // 5)

    User = get_user_model()
    user, _ = User.objects.get_or_create(username="benchmark-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)

    today = timezone.localdate()
    date_range = (today - timedelta(days=9), today - timedelta(days=7))
    rows = [(kind, {"q": text}, {"q": text}, payment) for kind, text, payment in searches()]
    rows.append(
        (
            "date range (3 days)",
            {"created_from": date_range[0].isoformat(), "created_to": date_range[1].isoformat()},
            {
                "created_at__gte": day_start(date_range[0]).isoformat(),
                "created_at__lt": day_start(date_range[1] + timedelta(days=1)).isoformat(),
            },
            None,
        )
    )
    print(f"{Payment.objects.count():,} payments; median of {args.runs} runs each")
    print()
    header = ("search", "matches", "ours ms", "queries", "stock ms", "queries", "speed-up")
    print("{:<28} {:>8} {:>9} {:>8}   {:>9} {:>8}   {:>8}".format(*header))
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        for kind, ours_query, stock_query, payment in rows:
            if "q" in ours_query:
                found = search_payments(Payment.objects.all(), ours_query["q"])
                matches = found.count()
                assert found.filter(pk=payment.pk).exists(), f"{kind}: {ours_query['q']!r} does not find {payment.pk}"
            else:
                matches = Payment.objects.filter(
                    created_at__date__gte=date_range[0], created_at__date__lte=date_range[1]
                ).count()
            ours = measure(client, f"/admin/payments/payment/?{urlencode(ours_query)}", runs=args.runs)
            if args.skip_stock:
                print(f"{kind:<28} {matches:>8,} {ours[0]:>9.1f} {ours[1]:>8}", flush=True)
                continue
            theirs = measure(client, f"/stock/payments/payment/?{urlencode(stock_query)}", runs=args.runs)
            print(
                f"{kind:<28} {matches:>8,} {ours[0]:>9.1f} {ours[1]:>8}   {theirs[0]:>9.1f} {theirs[1]:>8}   "
                f"{theirs[0] / ours[0]:>7.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
