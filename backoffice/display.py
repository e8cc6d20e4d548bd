"""
How the support desk writes things for people: statuses as words in a coloured
badge, times with their time zone, payments' titles, and links to the same
object in Stripe's dashboard.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html

from payments.models import Dispute, Payment
from refunds.models import Refund

# (words, colour) per status; colours: blue waiting on someone, green done, amber part-way, red failed, grey closed.
BLUE, GREEN, AMBER, RED, GREY = "#0969da", "#1a7f37", "#9a6700", "#cf222e", "#6e7781"
PAYMENT_STATUSES = {
    Payment.Status.REQUIRES_PAYMENT_METHOD: ("Awaiting payment", GREY),
    Payment.Status.REQUIRES_CONFIRMATION: ("Awaiting confirmation", GREY),
    Payment.Status.REQUIRES_ACTION: ("Waiting for the shopper (3-D Secure)", BLUE),
    Payment.Status.PROCESSING: ("Processing", BLUE),
    Payment.Status.REQUIRES_CAPTURE: ("Authorized, not captured", BLUE),
    Payment.Status.SUCCEEDED: ("Paid", GREEN),
    Payment.Status.FAILED: ("Failed", RED),
    Payment.Status.CANCELED: ("Canceled", GREY),
    Payment.Status.PARTIALLY_REFUNDED: ("Paid, partially refunded", AMBER),
    Payment.Status.REFUNDED: ("Paid, refunded in full", GREY),
}
REFUND_STATUSES = {
    Refund.Status.PENDING: ("Pending at Stripe", AMBER),
    Refund.Status.REQUIRES_ACTION: ("Needs the shopper's action", AMBER),
    Refund.Status.SUCCEEDED: ("Refunded", GREEN),
    Refund.Status.FAILED: ("Failed", RED),
    Refund.Status.CANCELED: ("Canceled", GREY),
}
DISPUTE_COLOURS = {"won": GREEN, "lost": RED, "warning_closed": GREY, "prevented": GREY}


def status_words(status: str, kind: str = "payment") -> str:
    """A payment's (or a refund's) status in words: `partially_refunded` is 'Paid, partially refunded'."""
    table = REFUND_STATUSES if kind == "refund" else PAYMENT_STATUSES
    return table.get(status, (status.replace("_", " ").capitalize(), GREY))[0]


def status_badge(status: str, kind: str = "payment"):
    """The status's words in a badge of its colour (HTML); `kind` is payment, refund or dispute."""
    if kind == "dispute":
        words = status.replace("_", " ").capitalize()
        colour = DISPUTE_COLOURS.get(status, AMBER if status in Dispute.OPEN_STATUSES else GREY)
    else:
        table = REFUND_STATUSES if kind == "refund" else PAYMENT_STATUSES
        words, colour = table.get(status, (status.replace("_", " ").capitalize(), GREY))
    return format_html(
        '<span class="badge status-{}" style="background: {}" title="{}">{}</span>', status, colour, status, words
    )


def when(moment: datetime | None) -> str:
    """`2026-11-29 20:55:03 UTC`: a time in the site's time zone, with that zone's name; '—' for none."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def payment_title(payment: Payment) -> str:
    """`$24.00 from ana@example.com — Paid, partially refunded`: what the payment is, for a page's heading."""
    who = payment.customer_email or payment.customer_name
    if not who and payment.user_id:
        who = payment.user.email or payment.user.get_username()
    source = f" from {who}" if who else ""
    return f"{payment.display_amount}{source} — {status_words(payment.status)}"


def stripe_dashboard_url(object_id: str) -> str | None:
    """
    The object's page in Stripe's dashboard, under /test/ unless the secret key is
    a live one (`sk_live_…`, `rk_live_…`): PaymentIntents and charges under
    payments/, refunds under refunds/, disputes under disputes/, events under events/.
    None for ids of other kinds.
    """
    if object_id.startswith(("pi_", "ch_", "py_")):
        section = "payments"
    elif object_id.startswith(("re_", "pyr_")):
        section = "refunds"
    elif object_id.startswith(("dp_", "du_")):
        section = "disputes"
    elif object_id.startswith("evt_"):
        section = "events"
    else:
        return None
    live = (settings.STRIPE_SECRET_KEY or "").startswith(("sk_live_", "rk_live_"))
    return f"https://dashboard.stripe.com/{'' if live else 'test/'}{section}/{object_id}"
