"""
The support desk: payments, their refunds, disputes and webhook events.

Built to stay fast at a million payments: no COUNT(*) of the whole table per
page (EstimatedCountPaginator, show_full_result_count off), exact-match search on
indexed columns only, related rows fetched in the same query, and sorting only
on the indexed `created_at`. Money is never edited here: payments and disputes
are view-only, and refunds go through refunds.services like the API's.
"""

from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import F
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html

from backoffice.capture_form import CAPTURE_PERMISSION, CaptureView, VoidView
from backoffice.dashboard import EVIDENCE_DUE_WITHIN, EXPIRING_WITHIN, DashboardView
from backoffice.display import payment_title, status_badge, status_words, stripe_dashboard_url, when
from backoffice.export import PaymentExportView
from backoffice.refund_form import RefundView
from backoffice.search import parse_search, search_payments
from backoffice.timeline import charge_ids, payment_timeline
from core.admin_helpers import EstimatedCountPaginator, ViewOnly, admin_link, search_by_identifiers
from payments.currencies import CURRENCIES, format_amount
from payments.models import Dispute, Payment
from refunds.models import Refund


def payments_by_intent(term: str):
    return Payment.objects.filter(stripe_payment_intent_id=term) if term.startswith("pi_") else None


def refund_origin(refund: Refund) -> str:
    return refund.created_by.get_username() if refund.created_by_id else "Stripe"


class StatusFilter(admin.SimpleListFilter):
    """The payment's status, in the words the desk shows it with (`status__exact`, as Django's own filter)."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request, model_admin):
        return [(status, status_words(status)) for status in Payment.Status.values]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class CurrencyFilter(admin.SimpleListFilter):
    """The currencies of Stripe's table (a payment adopted in another shows under none): no scan of the table."""

    title = "currency"
    # A drop-down: Stripe's table has some 150 currencies.
    template = "admin/backoffice/select_filter.html"
    parameter_name = "currency__exact"

    def lookups(self, request, model_admin):
        return [(code, code.upper()) for code in CURRENCIES]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value().lower()) if self.value() else queryset


class CaptureStateFilter(admin.SimpleListFilter):
    title = "capture state"
    parameter_name = "capture"

    def lookups(self, request, model_admin):
        return (
            ("authorized", "Authorized, awaiting capture"),
            ("expiring", f"Authorization expiring within {int(EXPIRING_WITHIN.total_seconds() // 3600)} h"),
            ("partial", "Captured in part"),
            ("mismatch", "Stripe's amounts do not fit"),
        )

    def queryset(self, request, queryset):
        authorized = queryset.filter(status=Payment.Status.REQUIRES_CAPTURE)
        if self.value() == "authorized":
            return authorized
        if self.value() == "expiring":
            return authorized.filter(capture_before__lt=timezone.now() + EXPIRING_WITHIN)
        if self.value() == "partial":
            return queryset.filter(status__in=Payment.PAID, amount_received__lt=F("amount"))
        if self.value() == "mismatch":
            return queryset.exclude(books_mismatch="")
        return queryset


class DateRangeFilter(admin.ListFilter):
    """
    Payments created from one day to another (both included, days in the site's
    time zone): `created_from` and `created_to` as YYYY-MM-DD, either may be
    left out. One range on the created_at index.
    """

    title = "created between"
    template = "admin/backoffice/date_range_filter.html"
    parameters = ("created_from", "created_to")

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in self.parameters:
            value = params.pop(name, None)
            # Django's changelist hands list filters each parameter as a list of values.
            if isinstance(value, list):
                value = value[-1] if value else None
            self.values[name] = value or ""

    def has_output(self):
        return True

    def expected_parameters(self):
        return list(self.parameters)

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The first moment of `created_from` and the first moment after `created_to` (None: open)."""
        zone = timezone.get_current_timezone()
        first, last = (parse_date(self.values[name]) if self.values[name] else None for name in self.parameters)
        start = datetime.combine(first, time.min, tzinfo=zone) if first else None
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone) if last else None
        return start, end

    def queryset(self, request, queryset):
        try:
            start, end = self.bounds()
        except ValueError:
            return queryset.none()
        if start is not None:
            queryset = queryset.filter(created_at__gte=start)
        if end is not None:
            queryset = queryset.filter(created_at__lt=end)
        return queryset

    def choices(self, changelist):
        # The template draws a form; this is what it keeps of the other filters and the search.
        kept = {key: value for key, value in changelist.get_filters_params().items() if key not in self.parameters}
        if changelist.query:
            kept["q"] = changelist.query
        yield {
            "values": self.values,
            "kept": [(key, value[-1] if isinstance(value, list) else value) for key, value in kept.items()],
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
            "zone": timezone.get_current_timezone_name(),
        }


@admin.register(Payment)
class PaymentAdmin(ViewOnly, admin.ModelAdmin):
    list_display = (
        "short_id",
        "intent",
        "customer",
        "amount_display",
        "status_display",
        "card_short",
        "created",
    )
    list_filter = (StatusFilter, DateRangeFilter, CaptureStateFilter, CurrencyFilter, "capture_method", "created_at")
    # Counting every filter choice would scan the whole table on each page.
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("user",)
    # Sorting on anything but the indexed created_at would sort the whole table.
    sortable_by = ("created",)
    # Search is backoffice.search's (get_search_results); this only turns the box on.
    search_fields = ("=id",)
    search_help_text = (
        "One box, exact matches: our payment id or its first 8+ characters (the order page's “Order ebb697fc”), "
        "a PaymentIntent, charge, refund or dispute id (pi_…, ch_…, re_…, dp_…), the order reference, the "
        "shopper's email (any case), an amount as typed (24, 24.00, $24, ¥500, 24 EUR), or the card's last 4 digits."
    )
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    change_form_template = "admin/payments/payment/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "status_display",
                    "amount_display",
                    "received_display",
                    "refunded_display",
                    "dispute_display",
                    "books_mismatch",
                )
            },
        ),
        ("Shopper", {"fields": ("shopper", "order_reference", "card", "account")}),
        ("Capture", {"fields": ("capture_state", "capturable_display", "capture_before_display")}),
        ("Stripe", {"fields": ("our_id", "stripe_links")}),
        ("Request", {"fields": ("idempotency_key", "description", "metadata")}),
        ("Last failure", {"fields": ("failure_code", "failure_message")}),
        ("Times", {"fields": ("created_display", "updated_display", "stripe_state_display")}),
    )
    readonly_fields = (
        "our_id",
        "account",
        "shopper",
        "stripe_links",
        "status_display",
        "amount_display",
        "received_display",
        "refunded_display",
        "dispute_display",
        "books_mismatch",
        "order_reference",
        "card",
        "capture_state",
        "capturable_display",
        "capture_before_display",
        "idempotency_key",
        "description",
        "metadata",
        "failure_code",
        "failure_message",
        "created_display",
        "updated_display",
        "stripe_state_display",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not obj.books_mismatch:
            # Only worth a line when Stripe's amounts did not fit.
            summary = tuple(f for f in fieldsets[0][1]["fields"] if f != "books_mismatch")
            fieldsets = ((None, {"fields": summary}), *fieldsets[1:])
        return fieldsets

    def get_search_results(self, request, queryset, search_term):
        return search_payments(queryset, search_term), False

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        query = request.GET.get("q", "").strip()
        if query:
            extra_context["search_kinds"] = parse_search(query).kinds
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(DashboardView.as_view(model_admin=self)), name="payments_dashboard"),
            path("export/", wrap(PaymentExportView.as_view(model_admin=self)), name="payments_payment_export"),
            path(
                "<uuid:object_id>/refund/",
                wrap(RefundView.as_view(model_admin=self)),
                name="payments_payment_refund",
            ),
            path(
                "<uuid:object_id>/capture/",
                wrap(CaptureView.as_view(model_admin=self)),
                name="payments_payment_capture",
            ),
            path("<uuid:object_id>/void/", wrap(VoidView.as_view(model_admin=self)), name="payments_payment_void"),
            *super().get_urls(),
        ]

    def can_refund(self, request, payment: Payment) -> bool:
        return request.user.has_perm("refunds.add_refund") and self.has_view_permission(request, payment)

    def can_capture(self, request, payment: Payment) -> bool:
        return request.user.has_perm(CAPTURE_PERMISSION) and self.has_view_permission(request, payment)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["show_refund_button"] = (
            obj is not None and obj.status in Payment.REFUNDABLE and self.can_refund(request, obj)
        )
        context["show_capture_buttons"] = obj is not None and obj.is_authorized and self.can_capture(request, obj)
        if obj is not None:
            context["title"] = payment_title(obj)
            context["subtitle"] = None
            context["timeline"] = payment_timeline(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Payment")
    def short_id(self, obj):
        # What the order page shows ("Order ebb697fc"); the full id is in the title and on the payment's page.
        return format_html('<span title="{}">{}</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        local = timezone.localtime(obj.created_at)
        return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"

    @admin.display(description="PaymentIntent")
    def intent(self, obj):
        return obj.stripe_payment_intent_id or "—"

    @admin.display(description="Shopper")
    def customer(self, obj):
        """The shopper's email; else the API account that made the payment."""
        if obj.customer_email:
            return obj.customer_email
        return obj.user.email or obj.user.get_username() if obj.user_id else "—"

    @admin.display(description="Shopper")
    def shopper(self, obj):
        """The shopper (name and email, as the storefront sent them), with a link to their other payments."""
        name = obj.customer_name
        email = obj.customer_email
        if not (name or email):
            return "— (the storefront sent no shopper)"
        if not email:
            return name
        others = reverse("admin:payments_payment_changelist") + "?" + urlencode({"q": email})
        return format_html(
            '{}{} · <a href="{}" id="shopper-payments">all payments from {}</a>',
            f"{name} " if name else "",
            format_html("&lt;{}&gt;", email) if name else email,
            others,
            email,
        )

    @admin.display(description="Our payment id")
    def our_id(self, obj):
        return str(obj.pk)

    @admin.display(description="API account")
    def account(self, obj):
        return obj.user.get_username() if obj.user_id else "—"

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return obj.display_amount

    @admin.display(description="Received (captured)")
    def received_display(self, obj):
        received = format_amount(obj.amount_received, obj.currency)
        if obj.uncaptured_amount:
            return f"{received} ({format_amount(obj.uncaptured_amount, obj.currency)} released uncaptured)"
        return received

    @admin.display(description="Capturable")
    def capturable_display(self, obj):
        return format_amount(obj.amount_capturable, obj.currency) if obj.is_authorized else "—"

    @admin.display(description="Capture state")
    def capture_state(self, obj):
        if obj.capture_method != Payment.CaptureMethod.MANUAL:
            return "Captured automatically when paid"
        if obj.is_authorized:
            return "Authorized: waiting to be captured or voided"
        if obj.status in Payment.PAID:
            if obj.amount_received < obj.amount:
                return "Captured in part"
            return "Captured"
        if obj.status == Payment.Status.CANCELED:
            return "Voided or expired: nothing captured"
        return "Manual capture, not authorized yet"

    @admin.display(description="Capture before")
    def capture_before_display(self, obj):
        if obj.capture_before is None:
            return "—"
        if obj.is_authorized and obj.capture_before < timezone.now() + EXPIRING_WITHIN:
            return format_html('<strong class="expiring">{} (expires within 24 h)</strong>', when(obj.capture_before))
        return when(obj.capture_before)

    @admin.display(description="Card")
    def card(self, obj):
        return f"{(obj.card_brand or 'card').capitalize()} •••• {obj.card_last4}" if obj.card_last4 else "—"

    @admin.display(description="Card")
    def card_short(self, obj):
        return f"•••• {obj.card_last4}" if obj.card_last4 else "—"

    @admin.display(description="In Stripe's dashboard")
    def stripe_links(self, obj):
        links = []
        if obj.stripe_payment_intent_id:
            links.append(("PaymentIntent", obj.stripe_payment_intent_id))
        links += [("Charge", charge) for charge in charge_ids(obj)]
        links += [
            ("Refund", refund_id)
            for refund_id in obj.refunds.exclude(stripe_refund_id=None).values_list("stripe_refund_id", flat=True)
        ]
        if not links:
            return "None (Stripe has not answered for it yet)"
        return format_html(
            "<br>".join(['{} <a href="{}" target="_blank" rel="noopener">{}</a>'] * len(links)),
            *(part for label, object_id in links for part in (label, stripe_dashboard_url(object_id), object_id)),
        )

    @admin.display(description="Refunded")
    def refunded_display(self, obj):
        return format_amount(obj.refunded_amount, obj.currency) if obj.refunded_amount else "—"

    @admin.display(description="Status")
    def status_display(self, obj):
        if obj.dispute_lost:
            # Paid, then taken back by a chargeback: never shown as plainly paid.
            return format_html("{} — dispute lost", status_badge(obj.status))
        return status_badge(obj.status)

    @admin.display(description="Created")
    def created_display(self, obj):
        return when(obj.created_at)

    @admin.display(description="Last changed")
    def updated_display(self, obj):
        return when(obj.updated_at)

    @admin.display(description="Stripe's state as of")
    def stripe_state_display(self, obj):
        return when(obj.stripe_state_at)

    @admin.display(description="Dispute")
    def dispute_display(self, obj):
        if not obj.dispute_status:
            return "—"
        if obj.amount_lost_to_disputes:
            lost = format_amount(obj.amount_lost_to_disputes, obj.currency)
            return f"{obj.dispute_status.replace('_', ' ')}: {lost} lost to disputes"
        return obj.dispute_status.replace("_", " ")


class EvidenceDueFilter(admin.SimpleListFilter):
    """Open disputes whose evidence is due within EVIDENCE_DUE_WITHIN (the dashboard's card links here)."""

    title = "evidence due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return (("soon", f"Within {EVIDENCE_DUE_WITHIN.days} days (open only)"),)

    def queryset(self, request, queryset):
        if self.value() == "soon":
            return queryset.filter(
                status__in=Dispute.OPEN_STATUSES, evidence_due_by__lt=timezone.now() + EVIDENCE_DUE_WITHIN
            )
        return queryset


class OpenDisputeFilter(admin.SimpleListFilter):
    title = "needs a response"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return (("yes", "Open"), ("no", "Closed"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status__in=Dispute.OPEN_STATUSES)
        if self.value() == "no":
            return queryset.exclude(status__in=Dispute.OPEN_STATUSES)
        return queryset


@admin.register(Dispute)
class DisputeAdmin(ViewOnly, admin.ModelAdmin):
    list_display = (
        "stripe_dispute_id",
        "payment_link",
        "amount_display",
        "status_display",
        "reason",
        "evidence_due",
        "created",
    )
    list_filter = (OpenDisputeFilter, EvidenceDueFilter, "status", "reason", "created_at")
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("payment",)
    sortable_by = ("created", "evidence_due")
    search_fields = ("=stripe_dispute_id", "=payment__id", "=payment__stripe_payment_intent_id")
    search_help_text = "Exact match: the dispute id (dp_…), our payment id or the PaymentIntent id."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = readonly_fields = (
        "stripe_dispute_id",
        "payment_link",
        "amount_display",
        "status_display",
        "reason",
        "evidence_due",
        "created",
        "updated",
    )

    def get_search_results(self, request, queryset, search_term):
        queryset = search_by_identifiers(
            queryset,
            search_term,
            uuid_fields=("payment_id",),
            text_fields=("stripe_dispute_id",),
            related={"payment_id": payments_by_intent},
        )
        return queryset, False

    @admin.display(description="Payment")
    def payment_link(self, obj):
        return admin_link(obj.payment, obj.payment.stripe_payment_intent_id or obj.payment_id)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.payment.currency)

    @admin.display(description="Status")
    def status_display(self, obj):
        return status_badge(obj.status, "dispute")

    @admin.display(description="Evidence due", ordering="evidence_due_by")
    def evidence_due(self, obj):
        return when(obj.evidence_due_by)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Last changed")
    def updated(self, obj):
        return when(obj.updated_at)
