"""
The support desk's dashboard (`/admin/payments/payment/dashboard/`): gross, refunded
and net volume (net also less what lost disputes took), paid volume per day, the
success rate and the refund rate by amount, and what needs attention.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views import View
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import Endpoint
from payments.currencies import CURRENCIES, format_amount
from payments.models import Dispute, Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent
from webhooks.queue import QueueFigures, queue_figures

# --- Dashboard ------------------------------------------------------------------

DASHBOARD_DAYS = 30
# A refund Stripe has not settled after this long needs someone to look at it.
STUCK_AFTER = timedelta(hours=1)
# An authorization expiring this soon must be captured (or voided) now.
EXPIRING_WITHIN = timedelta(hours=24)
EXPIRING_LISTED = 20
# An open dispute whose evidence is due this soon needs an answer in Stripe now.
EVIDENCE_DUE_WITHIN = timedelta(days=7)
OUTCOMES = Payment.PAID | {Payment.Status.FAILED, Payment.Status.CANCELED}


@dataclass
class Bar:
    day: date
    count: int
    total: int
    label: str
    x: float
    y: float
    height: float
    url: str


@dataclass
class DashboardFigures:
    start: datetime
    currency: str
    currencies: list[str]
    bars: list[Bar]
    # What paid payments created in the window received (captured), in `currency`'s minor units.
    volume: int
    paid: int
    with_outcome: int
    # Paid payments refunded in part or in full (a count).
    refunded: int
    failed_webhooks: int
    stuck_refunds: int
    open_disputes: int
    # Stripe's events stored but not applied yet, and the background job queue.
    pending_webhooks: int
    jobs: QueueFigures
    # Authorized payments whose capture_before is within EXPIRING_WITHIN, soonest first (at most EXPIRING_LISTED).
    expiring: list[Payment]
    expiring_count: int
    books_mismatches: int
    # Storefront endpoints whose every delivery fails (those disabled for it included).
    failing_endpoints: int = 0
    # Of the same payments, in the same unit: what succeeded refunds gave back, and what
    # disputes lost for good (`lost`: the cardholder kept the disputed amount) took.
    refunded_volume: int = 0
    disputes_lost_volume: int = 0
    # Open disputes whose evidence is due within EVIDENCE_DUE_WITHIN.
    evidence_due: int = 0

    @property
    def success_rate(self) -> float | None:
        """Paid payments among those that reached an outcome (paid, failed or canceled)."""
        return self.paid / self.with_outcome if self.with_outcome else None

    @property
    def gross_volume(self) -> int:
        """What paid payments received (captured), in minor units of `currency`."""
        return self.volume

    @property
    def net_volume(self) -> int:
        """Gross, less succeeded refunds, less disputes lost (minor units of `currency`)."""
        return self.volume - self.refunded_volume - self.disputes_lost_volume

    @property
    def refund_rate(self) -> float | None:
        """The share of the gross volume that refunds gave back (by amount, not by count)."""
        return self.refunded_volume / self.volume if self.volume else None


CHART = {"width": 760, "height": 220, "left": 80, "right": 40, "bottom": 24, "top": 10}


def dashboard_figures(*, now: datetime, currency: str | None = None) -> DashboardFigures:
    """
    The last 30 days (today included, UTC) in one grouped query over the
    payments' created_at index, plus indexed counts of what needs a person and
    the background job queue's figures. Volume is per currency (amounts in different currencies do not add
    up): the one asked for, else the one with the most paid payments.
    """
    first_day = now.date() - timedelta(days=DASHBOARD_DAYS - 1)
    start = datetime.combine(first_day, time.min, tzinfo=now.tzinfo)
    rows = (
        Payment.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "currency", "status")
        .annotate(
            count=Count("pk"),
            total=Sum("amount_received"),
            refunded_total=Sum("refunded_amount"),
            refunded=Count("pk", filter=Q(refunded_amount__gt=0)),
        )
        .order_by()
    )
    expiring = expiring_authorizations(now=now)
    paid_per_currency: dict[str, int] = {}
    refunded_per_currency: dict[str, int] = {}
    per_day: dict[tuple[date, str], list[int]] = {}
    paid = with_outcome = refunded = 0
    for row in rows:
        if row["status"] in OUTCOMES:
            with_outcome += row["count"]
        if row["status"] in Payment.PAID:
            paid += row["count"]
            refunded += row["refunded"]
            paid_per_currency[row["currency"]] = paid_per_currency.get(row["currency"], 0) + row["count"]
            refunded_per_currency[row["currency"]] = (
                refunded_per_currency.get(row["currency"], 0) + row["refunded_total"]
            )
            day = per_day.setdefault((row["day"], row["currency"]), [0, 0])
            day[0] += row["count"]
            day[1] += row["total"]
    currencies = sorted(paid_per_currency, key=lambda c: -paid_per_currency[c])
    if currency not in CURRENCIES:
        currency = currencies[0] if currencies else "usd"
    days = [first_day + timedelta(days=n) for n in range(DASHBOARD_DAYS)]
    return DashboardFigures(
        start=start,
        currency=currency,
        currencies=currencies,
        bars=chart_bars(days, {d: per_day.get((d, currency), [0, 0]) for d in days}, currency),
        volume=sum(per_day.get((d, currency), [0, 0])[1] for d in days),
        paid=paid,
        with_outcome=with_outcome,
        refunded=refunded,
        refunded_volume=refunded_per_currency.get(currency, 0),
        disputes_lost_volume=Dispute.objects.filter(
            status=Dispute.Status.LOST, payment__currency=currency, payment__created_at__gte=start
        ).aggregate(total=Sum("amount"))["total"]
        or 0,
        evidence_due=evidence_due_disputes(now=now).count(),
        failed_webhooks=WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).count(),
        stuck_refunds=Refund.objects.filter(status=Refund.Status.PENDING, created_at__lt=now - STUCK_AFTER).count(),
        open_disputes=Dispute.objects.filter(status__in=Dispute.OPEN_STATUSES).count(),
        pending_webhooks=WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.PENDING).count(),
        jobs=queue_figures(),
        expiring=list(expiring.select_related("user").order_by("capture_before")[:EXPIRING_LISTED]),
        expiring_count=expiring.count(),
        books_mismatches=Payment.objects.exclude(books_mismatch="").count(),
        failing_endpoints=Endpoint.objects.filter(failing_since__isnull=False).count(),
    )


def expiring_authorizations(*, now: datetime):
    """Authorized payments to capture before `now` + EXPIRING_WITHIN (a partial index on capture_before)."""
    return Payment.objects.filter(status=Payment.Status.REQUIRES_CAPTURE, capture_before__lt=now + EXPIRING_WITHIN)


def evidence_due_disputes(*, now: datetime):
    """Open disputes whose evidence is due before `now` + EVIDENCE_DUE_WITHIN (Stripe's evidence_details.due_by)."""
    return Dispute.objects.filter(status__in=Dispute.OPEN_STATUSES, evidence_due_by__lt=now + EVIDENCE_DUE_WITHIN)


def chart_bars(days: list[date], per_day: dict[date, list[int]], currency: str) -> list[Bar]:
    plot_height = CHART["height"] - CHART["bottom"] - CHART["top"]
    slot = (CHART["width"] - CHART["left"] - CHART["right"]) / len(days)
    highest = max((total for _, total in per_day.values()), default=0) or 1
    changelist = reverse("admin:payments_payment_changelist")
    bars = []
    for n, day in enumerate(days):
        count, total = per_day[day]
        height = plot_height * total / highest
        day_start = datetime.combine(day, time.min, tzinfo=UTC)
        query = {
            "currency__exact": currency,
            "status__in": ",".join(sorted(Payment.PAID)),
            "created_at__gte": day_start.isoformat(),
            "created_at__lt": (day_start + timedelta(days=1)).isoformat(),
        }
        bars.append(
            Bar(
                day=day,
                count=count,
                total=total,
                label=format_amount(total, currency),
                x=CHART["left"] + n * slot + 2,
                y=CHART["top"] + plot_height - height,
                height=height,
                url=f"{changelist}?{urlencode(query)}",
            )
        )
    return bars


def waited(seconds: float) -> str:
    """`42 s`, `12 min`, `3.5 h`: how long the oldest due job has waited, said the way a person would."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def admin_list_url(model, query: dict, user=None) -> str | None:
    """The filtered admin list of `model`; None when this site has no admin for it, or `user` may not view it."""
    if user is not None and not user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}"):
        return None
    try:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode(query)}"


class DashboardView(View):
    """Staff who may view payments: volume, success and refund rates, what needs attention."""

    model_admin = None

    def get(self, request):
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied

        def list_url(model, query: dict) -> str | None:
            return admin_list_url(model, query, request.user)

        figures = dashboard_figures(now=timezone.now(), currency=request.GET.get("currency"))
        highest = max((bar.total for bar in figures.bars), default=0)
        plot_height = CHART["height"] - CHART["bottom"] - CHART["top"]
        since = figures.start.isoformat()
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": Payment._meta,
            "title": "Payments dashboard",
            "figures": figures,
            "chart": CHART
            | {
                "bar_width": (CHART["width"] - CHART["left"] - CHART["right"]) / DASHBOARD_DAYS - 4,
                "plot_right": CHART["width"] - CHART["right"],
                "baseline": CHART["top"] + plot_height,
                "ticks": [
                    {
                        "y": CHART["top"] + plot_height * (1 - share),
                        "label": format_amount(round(highest * share), figures.currency),
                    }
                    for share in (0, 0.5, 1)
                ],
                "day_labels": [bar for n, bar in enumerate(figures.bars) if n % 5 == 0 or n == DASHBOARD_DAYS - 1],
            },
            "volume": format_amount(figures.volume, figures.currency),
            "refunded_volume": format_amount(figures.refunded_volume, figures.currency),
            "disputes_lost_volume": format_amount(figures.disputes_lost_volume, figures.currency),
            "net_volume": format_amount(figures.net_volume, figures.currency),
            "evidence_due_url": list_url(Dispute, {"due": "soon"}),
            "lost_disputes_url": list_url(Dispute, {"status__exact": Dispute.Status.LOST}),
            "success_rate": percent(figures.success_rate),
            "refund_rate": percent(figures.refund_rate),
            "paid_url": admin_list_url(
                Payment, {"status__in": ",".join(sorted(Payment.PAID)), "created_at__gte": since}
            ),
            "unpaid_url": admin_list_url(
                Payment,
                {"status__in": f"{Payment.Status.FAILED},{Payment.Status.CANCELED}", "created_at__gte": since},
            ),
            "refunded_url": admin_list_url(
                Payment,
                {
                    "status__in": f"{Payment.Status.PARTIALLY_REFUNDED},{Payment.Status.REFUNDED}",
                    "created_at__gte": since,
                },
            ),
            "failed_webhooks_url": list_url(WebhookEvent, {"outcome__exact": WebhookEvent.Outcome.FAILED}),
            "pending_webhooks_url": list_url(WebhookEvent, {"outcome__exact": WebhookEvent.Outcome.PENDING}),
            "pending_jobs_url": list_url(ProcrastinateJob, {"status__in": "todo,doing"}),
            "failed_jobs_url": list_url(ProcrastinateJob, {"status__exact": "failed"}),
            "oldest_pending_job": waited(figures.jobs.oldest_pending_seconds),
            "stuck_refunds_url": list_url(Refund, {"stuck": "yes"}),
            "open_disputes_url": list_url(Dispute, {"open": "yes"}),
            "expiring_url": list_url(Payment, {"capture": "expiring"}),
            "mismatches_url": list_url(Payment, {"capture": "mismatch"}),
            "expiring": [
                {
                    "payment": payment,
                    "url": reverse("admin:payments_payment_change", args=[payment.pk]),
                    "capturable": format_amount(payment.amount_capturable, payment.currency),
                }
                for payment in figures.expiring
            ],
            "failing_endpoints_url": list_url(Endpoint, {"failing": "yes"}),
        }
        return TemplateResponse(request, "admin/payments/dashboard.html", context)
