"""
The support desk's four busiest pages at scale, against a stock ModelAdmin on the same data.

    createdb -h 127.0.0.1 -U postgres paymentsite_admin_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/paymentsite_admin_bench \\
        .venv/bin/python -m benchmarks.admin_pages [--payments 1000000] [--runs 5]

Migrates the database and, if it holds fewer payments than asked, adds the rest
with `seed_demo_data` (with a fifth as many refunds). Then it requests, through
Django's test client as a signed-in superuser, each page of our PaymentAdmin
and of a stock `ModelAdmin` declaring the same list columns, filters and search
fields (registered on a separate AdminSite that exists only here), and prints
the median time and the number of SQL queries side by side.
"""

import argparse
import statistics
import sys
import time

import benchmarks.in_process  # noqa: F401  (sets Django up: before any model)

# isort: split

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path

from payments.models import Payment


class StockPaymentAdmin(admin.ModelAdmin):
    """What `admin.site.register(Payment, ...)` with the obvious options gives."""

    list_display = ("id", "stripe_payment_intent_id", "user", "amount", "currency", "status", "created_at")
    list_filter = ("status", "currency", "created_at")
    search_fields = ("id", "stripe_payment_intent_id", "user__email", "idempotency_key")
    # Django's own templates, not this project's overrides for the payments pages.
    change_list_template = "admin/change_list.html"
    change_form_template = "admin/change_form.html"


stock_site = admin.AdminSite(name="stock")
stock_site.register(Payment, StockPaymentAdmin)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("stock/", stock_site.urls),
]


def measure(client: Client, url: str, *, runs: int, expect: str | None) -> tuple[float, int]:
    """Median milliseconds over `runs` requests (after one to warm caches) and the queries of one."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    if expect is not None:
        assert expect in response.content.decode(), f"{expect!r} not on {url}"
    timings = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), len(queries.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
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

    # A payment with refunds and webhook events, to search for and to open.
    payment = Payment.objects.filter(refunds__isnull=False, webhook_events__isnull=False).first() or (
        Payment.objects.filter(refunds__isnull=False).first()
    )
    intent = payment.stripe_payment_intent_id
    pages = [
        ("list (newest first)", "payment/", None),
        ("search by PaymentIntent id", f"payment/?q={intent}", intent),
        ("filter status=succeeded", "payment/?status__exact=succeeded", None),
        ("payment page", f"payment/{payment.pk}/change/", intent),
        ("search by customer email", f"payment/?q={payment.user.email}", intent),
    ]
    counts = {
        "payments": Payment.objects.count(),
        "refunds": payment.refunds.model.objects.count(),
        "users": User.objects.count(),
    }
    print(", ".join(f"{n:,} {name}" for name, n in counts.items()) + f"; median of {args.runs} runs each")
    print()
    print(f"{'page':<28} {'ours ms':>9} {'queries':>8}   {'stock ms':>9} {'queries':>8}   {'speed-up':>8}")
    with override_settings(ROOT_URLCONF=sys.modules[__name__], ALLOWED_HOSTS=["testserver"]):
        for name, page, expect in pages:
            ours = measure(client, f"/admin/payments/{page}", runs=args.runs, expect=expect)
            stock = measure(client, f"/stock/payments/{page}", runs=args.runs, expect=expect)
            speed_up = stock[0] / ours[0]
            print(f"{name:<28} {ours[0]:>9.1f} {ours[1]:>8}   {stock[0]:>9.1f} {stock[1]:>8}   {speed_up:>7.1f}x")


if __name__ == "__main__":
    main()
