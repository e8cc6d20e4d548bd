"""
The support desk's own pages, served by PaymentAdmin under /admin/payments/payment/:
the refund form (`<id>/refund/`), the dashboard (`dashboard/`) and the CSV export
of the filtered payments list (`export/`).
"""

import csv
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views import View

from core.exceptions import DomainError
from core.stripe_gateway import StripeError
from payments.currencies import CURRENCIES, Currency, format_amount
from payments.models import Dispute, Payment
from refunds import services as refund_services
from refunds.models import Refund
from webhooks.models import WebhookEvent

# --- Refund -------------------------------------------------------------------


class RefundForm(forms.Form):
    """
    The amount is typed in the currency's units ("12.50", "500" for yen) and
    cleaned to minor units. `token` is minted when the form is first shown and
    becomes the refund's idempotency key: the same form sent twice (a
    double-click, a reload, the back button) refunds once.
    """

    amount = forms.DecimalField()
    reason = forms.ChoiceField(
        choices=[("", "None given"), *Refund.Reason.choices],
        required=False,
        help_text="Sent to Stripe.",
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="For the audit trail: why, who asked, the ticket number. Stays here.",
    )
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, currency: Currency, refundable: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.refundable = refundable
        self.fields["amount"] = forms.DecimalField(
            label=f"Amount ({currency.code.upper()})",
            decimal_places=currency.decimals,
            min_value=Decimal(1).scaleb(-currency.decimals),
            help_text=f"At most {currency.format(refundable)}, all that is left to refund.",
        )

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    @classmethod
    def initial_for(cls, currency: Currency, refundable: int) -> dict:
        return {"amount": Decimal(refundable).scaleb(-currency.decimals), "token": cls.new_token()}

    def clean_amount(self) -> int:
        minor = int(self.cleaned_data["amount"].scaleb(self.currency.decimals))
        if minor > self.refundable:
            raise ValidationError(
                f"That is more than is left: only {self.currency.format(self.refundable)} can still be refunded."
            )
        return minor


class RefundView(View):
    """
    GET: the form. POST: the confirmation page stating exactly what will happen;
    POST with `confirm`: the refund, through refunds.services.refund_create.
    Staff need `refunds.add_refund` and the right to view the payment.
    """

    model_admin = None
    template_name = "admin/payments/payment/refund.html"

    def dispatch(self, request, object_id):
        self.payment = get_object_or_404(Payment.objects.select_related("user"), pk=object_id)
        if not self.model_admin.can_refund(request, self.payment):
            raise PermissionDenied
        self.currency = CURRENCIES[self.payment.currency]
        self.refundable = max(refund_services.payment_unreserved_amount(payment=self.payment), 0)
        return super().dispatch(request, object_id)

    def get(self, request, object_id):
        if not self.is_refundable():
            messages.error(request, self.not_refundable_message())
            return redirect(self.payment_url())
        return self.render(self.form(initial=RefundForm.initial_for(self.currency, self.refundable)))

    def post(self, request, object_id):
        sent = self.refund_sent_with(request.POST) if "confirm" in request.POST else None
        if sent is not None and sent.status in Refund.HOLDING:
            # The same confirmation again (a reload, a double-click): the money its
            # first sending set aside is not counted against it, so it reaches the
            # service, which answers with that first refund instead of a new one.
            self.refundable += sent.amount
        elif not self.is_refundable():
            messages.error(request, self.not_refundable_message())
            return redirect(self.payment_url())
        form = self.form(data=request.POST)
        if not form.is_valid() or "edit" in request.POST:
            return self.render(form)
        if "confirm" not in request.POST:
            return self.render(form, confirming=True)
        return self.refund(form)

    @staticmethod
    def idempotency_key(token: str) -> str:
        return f"admin-{token}"

    def refund_sent_with(self, data) -> Refund | None:
        """The refund an earlier sending of this form made, if any."""
        token = data.get("token", "")
        return self.payment.refunds.filter(idempotency_key=self.idempotency_key(token)).first() if token else None

    def refund(self, form):
        request = self.request
        key = self.idempotency_key(form.cleaned_data["token"])
        try:
            refund, replayed = refund_services.refund_create(
                payment=self.payment,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
                created_by=request.user,
                idempotency_key=key,
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            # The refused attempt keeps its key; a corrected one gets a fresh one.
            data = request.POST.copy()
            data["token"] = RefundForm.new_token()
            return self.render(self.form(data=data), status=400)
        except StripeError as exc:
            refund = self.refund_sent_with(form.cleaned_data)
            if refund is not None:
                self.log(refund)
            if exc.ambiguous:
                messages.warning(
                    request,
                    f"Stripe did not confirm the refund of {self.amount_text(form)} ({exc.message}). "
                    "It is recorded as pending and `retry_refunds` will complete it: do not refund again.",
                )
            else:
                messages.error(request, f"Stripe refused the refund: {exc.message}")
            return redirect(self.payment_url())
        amount = format_amount(refund.amount, self.payment.currency)
        if replayed:
            messages.info(
                request,
                f"This refund form was already sent: the refund of {amount} was made once "
                f"(now {refund.status}); nothing more was refunded.",
            )
        else:
            self.log(refund)
            messages.success(request, f"Refund of {amount} created: {refund.status.replace('_', ' ')}.")
        # Redirect after POST: reloading the payment's page sends nothing again.
        return redirect(self.payment_url())

    def log(self, refund: Refund) -> None:
        amount = format_amount(refund.amount, self.payment.currency)
        reason = refund.reason or "no reason given"
        note = f" Note: {refund.note}" if refund.note else ""
        self.model_admin.log_addition(
            self.request, refund, f"Refunded {amount} on payment {self.payment.pk} ({reason}).{note}"
        )

    def form(self, **kwargs) -> RefundForm:
        return RefundForm(currency=self.currency, refundable=self.refundable, **kwargs)

    def amount_text(self, form) -> str:
        return self.currency.format(form.cleaned_data["amount"])

    def is_refundable(self) -> bool:
        return self.payment.status in Payment.REFUNDABLE and self.refundable > 0

    def not_refundable_message(self) -> str:
        if self.payment.status not in Payment.REFUNDABLE:
            return f"This payment cannot be refunded: it is {self.payment.status.replace('_', ' ')}."
        return "Nothing is left to refund on this payment (pending refunds included)."

    def payment_url(self) -> str:
        return reverse("admin:payments_payment_change", args=[self.payment.pk])

    def render(self, form, *, confirming=False, status=200):
        context = {
            **self.model_admin.admin_site.each_context(self.request),
            "opts": Payment._meta,
            "title": f"Refund payment {self.payment.stripe_payment_intent_id or self.payment.pk}",
            "payment": self.payment,
            "payment_url": self.payment_url(),
            "form": form,
            "confirming": confirming,
            "refundable": self.currency.format(self.refundable),
        }
        if confirming:
            amount = form.cleaned_data["amount"]
            context |= {
                "amount": self.currency.format(amount),
                "left_after": self.currency.format(self.refundable - amount),
                "is_full": amount == self.refundable,
                "reason": dict(Refund.Reason.choices).get(form.cleaned_data["reason"], ""),
            }
        return TemplateResponse(self.request, self.template_name, context, status=status)


# --- Dashboard ------------------------------------------------------------------

DASHBOARD_DAYS = 30
# A refund Stripe has not settled after this long needs someone to look at it.
STUCK_AFTER = timedelta(hours=1)
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
    volume: int
    paid: int
    with_outcome: int
    refunded: int
    failed_webhooks: int
    stuck_refunds: int
    open_disputes: int

    @property
    def success_rate(self) -> float | None:
        """Paid payments among those that reached an outcome (paid, failed or canceled)."""
        return self.paid / self.with_outcome if self.with_outcome else None

    @property
    def refund_rate(self) -> float | None:
        """Paid payments that were refunded, in part or in full."""
        return self.refunded / self.paid if self.paid else None


CHART = {"width": 760, "height": 220, "left": 80, "right": 40, "bottom": 24, "top": 10}


def dashboard_figures(*, now: datetime, currency: str | None = None) -> DashboardFigures:
    """
    The last 30 days (today included, UTC) in one grouped query over the
    payments' created_at index, plus three indexed counts of what needs a
    person. Volume is per currency (amounts in different currencies do not add
    up): the one asked for, else the one with the most paid payments.
    """
    first_day = now.date() - timedelta(days=DASHBOARD_DAYS - 1)
    start = datetime.combine(first_day, time.min, tzinfo=now.tzinfo)
    rows = (
        Payment.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "currency", "status")
        .annotate(count=Count("pk"), total=Sum("amount"), refunded=Count("pk", filter=Q(refunded_amount__gt=0)))
        .order_by()
    )
    paid_per_currency: dict[str, int] = {}
    per_day: dict[tuple[date, str], list[int]] = {}
    paid = with_outcome = refunded = 0
    for row in rows:
        if row["status"] in OUTCOMES:
            with_outcome += row["count"]
        if row["status"] in Payment.PAID:
            paid += row["count"]
            refunded += row["refunded"]
            paid_per_currency[row["currency"]] = paid_per_currency.get(row["currency"], 0) + row["count"]
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
        failed_webhooks=WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).count(),
        stuck_refunds=Refund.objects.filter(status=Refund.Status.PENDING, created_at__lt=now - STUCK_AFTER).count(),
        open_disputes=Dispute.objects.filter(status__in=Dispute.OPEN_STATUSES).count(),
    )


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


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def admin_list_url(model, query: dict) -> str | None:
    """The filtered admin list of `model`; None when this site has no admin for it."""
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
            "failed_webhooks_url": admin_list_url(WebhookEvent, {"outcome__exact": WebhookEvent.Outcome.FAILED}),
            "stuck_refunds_url": admin_list_url(Refund, {"stuck": "yes"}),
            "open_disputes_url": admin_list_url(Dispute, {"open": "yes"}),
        }
        return TemplateResponse(request, "admin/payments/dashboard.html", context)


# --- CSV export -----------------------------------------------------------------

EXPORT_COLUMNS = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("stripe_payment_intent_id", "stripe_payment_intent_id"),
    ("customer_email", "user__email"),
    ("status", "status"),
    ("currency", "currency"),
    ("amount", "amount"),
    ("refunded_amount", "refunded_amount"),
    ("idempotency_key", "idempotency_key"),
    ("description", "description"),
)


class Echo:
    """A file-like object csv.writer can write to that just hands each line back."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value):
    # A cell starting with = + - @ is a formula to Excel and LibreOffice: a
    # customer's description must not run as one on a colleague's machine.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class PaymentExportView(View):
    """
    The payments list as CSV, with the same filters and search as the list
    page (its query string is passed along), streamed from a server-side
    cursor: a million rows never sit in memory. Amounts are in minor units,
    with the display amount beside them.
    """

    model_admin = None

    def get(self, request):
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.model_admin.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:payments_payment_changelist"))
        rows = changelist.queryset.values_list(*(lookup for _, lookup in EXPORT_COLUMNS)).iterator(chunk_size=2000)
        writer = csv.writer(Echo())

        def lines():
            yield writer.writerow([name for name, _ in EXPORT_COLUMNS] + ["amount_display"])
            for row in rows:
                amount, currency = row[6], row[5]
                yield writer.writerow([spreadsheet_safe(value) for value in row] + [format_amount(amount, currency)])

        filename = f"payments-{timezone.now():%Y%m%d-%H%M%S}.csv"
        return StreamingHttpResponse(
            lines(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
