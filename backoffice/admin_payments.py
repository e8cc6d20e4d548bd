"""
The support desk: payments, their refunds, disputes and webhook events.

Built to stay fast at a million payments: no COUNT(*) of the whole table per
page (EstimatedCountPaginator, show_full_result_count off), exact-match search on
indexed columns only, related rows fetched in the same query, and sorting only
on the indexed `created_at`. Money is never edited here: payments and disputes
are view-only, and refunds go through refunds.services like the API's.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import F
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from backoffice.admin_notifications import NotificationInline
from backoffice.capture_form import CAPTURE_PERMISSION, CaptureView, VoidView
from backoffice.dashboard import EXPIRING_WITHIN, DashboardView
from backoffice.export import PaymentExportView
from backoffice.refund_form import RefundView
from core.admin_helpers import EstimatedCountPaginator, ViewOnly, admin_link, search_by_identifiers
from payments.currencies import CURRENCIES, format_amount
from payments.models import Dispute, Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent

STATUS_COLOURS = {
    Payment.Status.REQUIRES_CAPTURE: "#0969da",
    Payment.Status.SUCCEEDED: "#1a7f37",
    Payment.Status.PARTIALLY_REFUNDED: "#9a6700",
    Payment.Status.REFUNDED: "#6e7781",
    Payment.Status.FAILED: "#cf222e",
    Payment.Status.CANCELED: "#6e7781",
    Refund.Status.PENDING: "#9a6700",
    Refund.Status.REQUIRES_ACTION: "#9a6700",
}


def status_badge(status: str):
    return format_html(
        '<strong class="status status-{}" style="color: {}">{}</strong>',
        status,
        STATUS_COLOURS.get(status, "inherit"),
        status.replace("_", " "),
    )


def users_by_email(term: str):
    return get_user_model().objects.filter(email__iexact=term) if "@" in term else None


def payments_by_intent(term: str):
    return Payment.objects.filter(stripe_payment_intent_id=term) if term.startswith("pi_") else None


class ReadOnlyInline(ViewOnly, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class RefundInline(ReadOnlyInline):
    model = Refund
    verbose_name_plural = "Refunds (newest first)"
    fields = readonly_fields = ("refund", "amount_display", "status_display", "reason", "note", "origin", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment", "created_by").order_by("-created_at")

    @admin.display(description="Refund")
    def refund(self, obj):
        return admin_link(obj)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.payment.currency)

    @admin.display(description="Status")
    def status_display(self, obj):
        if obj.dispute_lost:
            # Paid, then taken back by a chargeback: never shown as plainly paid.
            return format_html("{} — dispute lost", status_badge(obj.status))
        return status_badge(obj.status)

    @admin.display(description="Dispute")
    def dispute_display(self, obj):
        if not obj.dispute_status:
            return "—"
        if obj.amount_lost_to_disputes:
            lost = format_amount(obj.amount_lost_to_disputes, obj.currency)
            return f"{obj.dispute_status.replace('_', ' ')}: {lost} lost to disputes"
        return obj.dispute_status.replace("_", " ")

    @admin.display(description="Created by")
    def origin(self, obj):
        return refund_origin(obj)


class DisputeInline(ReadOnlyInline):
    model = Dispute
    verbose_name_plural = "Disputes (newest first)"
    fields = readonly_fields = ("dispute", "amount_display", "status", "reason", "evidence_due_by", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment").order_by("-created_at")

    @admin.display(description="Dispute")
    def dispute(self, obj):
        return admin_link(obj, obj.stripe_dispute_id)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.payment.currency)


class WebhookEventInline(ReadOnlyInline):
    model = WebhookEvent
    verbose_name_plural = "Webhook events (newest first)"
    fields = readonly_fields = ("event", "type", "outcome", "received_at", "processed_at", "error")

    def get_queryset(self, request):
        # The payloads are Stripe's whole objects: not needed for the list.
        return super().get_queryset(request).defer("payload").order_by("-received_at")

    @admin.display(description="Event")
    def event(self, obj):
        return admin_link(obj, obj.stripe_event_id)


def refund_origin(refund: Refund) -> str:
    return refund.created_by.get_username() if refund.created_by_id else "Stripe"


class CurrencyFilter(admin.SimpleListFilter):
    """The currencies of Stripe's table (a payment adopted in another shows under none): no scan of the table."""

    title = "currency"
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


@admin.register(Payment)
class PaymentAdmin(ViewOnly, admin.ModelAdmin):
    list_display = (
        "short_id",
        "intent",
        "customer",
        "amount_display",
        "status_display",
        "created",
    )
    list_filter = ("status", CaptureStateFilter, "capture_method", CurrencyFilter, "created_at")
    # Counting every filter choice would scan the whole table on each page.
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("user",)
    # Sorting on anything but the indexed created_at would sort the whole table.
    sortable_by = ("created",)
    search_fields = (
        "=id",
        "=stripe_payment_intent_id",
        "=user__email",
        "=idempotency_key",
        "=order_reference",
        "=customer_email",
        "=card_last4",
    )
    search_help_text = (
        "Exact match: our payment id, the PaymentIntent id (pi_…), the order reference, the shopper's or the "
        "API account's email, the card's last 4 digits, or the idempotency key."
    )
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    inlines = (RefundInline, DisputeInline, WebhookEventInline, NotificationInline)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "stripe_payment_intent_id",
                    "status_display",
                    "amount_display",
                    "received_display",
                    "refunded_display",
                    "dispute_display",
                    "currency",
                    "books_mismatch",
                )
            },
        ),
        ("Shopper", {"fields": ("order_reference", "customer_email", "customer_name", "card", "customer")}),
        ("Capture", {"fields": ("capture_method", "capturable_display", "capture_before")}),
        ("Request", {"fields": ("idempotency_key", "description", "metadata")}),
        ("Last failure", {"fields": ("failure_code", "failure_message")}),
        ("Times", {"fields": ("created_at", "updated_at", "stripe_state_at")}),
    )
    readonly_fields = (
        "id",
        "stripe_payment_intent_id",
        "customer",
        "status_display",
        "amount_display",
        "received_display",
        "refunded_display",
        "dispute_display",
        "currency",
        "books_mismatch",
        "order_reference",
        "customer_email",
        "customer_name",
        "card",
        "capture_method",
        "capturable_display",
        "capture_before",
        "idempotency_key",
        "description",
        "metadata",
        "failure_code",
        "failure_message",
        "created_at",
        "updated_at",
        "stripe_state_at",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def get_search_results(self, request, queryset, search_term):
        text_fields = ["stripe_payment_intent_id", "idempotency_key", "order_reference"]
        term = search_term.strip()
        if "@" in term:
            text_fields.append("customer_email__iexact")
        if len(term) == 4 and term.isdigit():
            text_fields.append("card_last4")
        queryset = search_by_identifiers(
            queryset,
            search_term,
            uuid_fields=("pk",),
            text_fields=text_fields,
            related={"user_id": users_by_email},
        )
        return queryset, False

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
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Payment")
    def short_id(self, obj):
        # The full id is on the payment's page and in the link's title; search takes it whole.
        return format_html('<span title="{}">{}…</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj):
        return f"{obj.created_at:%Y-%m-%d %H:%M}"

    @admin.display(description="PaymentIntent")
    def intent(self, obj):
        return obj.stripe_payment_intent_id or "—"

    @admin.display(description="Customer")
    def customer(self, obj):
        """The shopper's email; else the API account that made the payment."""
        if obj.customer_email:
            return obj.customer_email
        return obj.user.email or obj.user.get_username() if obj.user_id else "—"

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

    @admin.display(description="Card")
    def card(self, obj):
        return f"{obj.card_brand or 'card'} •••• {obj.card_last4}" if obj.card_last4 else "—"

    @admin.display(description="Refunded")
    def refunded_display(self, obj):
        return format_amount(obj.refunded_amount, obj.currency) if obj.refunded_amount else "—"

    @admin.display(description="Status")
    def status_display(self, obj):
        if obj.dispute_lost:
            # Paid, then taken back by a chargeback: never shown as plainly paid.
            return format_html("{} — dispute lost", status_badge(obj.status))
        return status_badge(obj.status)

    @admin.display(description="Dispute")
    def dispute_display(self, obj):
        if not obj.dispute_status:
            return "—"
        if obj.amount_lost_to_disputes:
            lost = format_amount(obj.amount_lost_to_disputes, obj.currency)
            return f"{obj.dispute_status.replace('_', ' ')}: {lost} lost to disputes"
        return obj.dispute_status.replace("_", " ")


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
        "status",
        "reason",
        "evidence_due_by",
        "created_at",
    )
    list_filter = (OpenDisputeFilter, "status", "reason", "created_at")
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("payment",)
    sortable_by = ("created_at", "evidence_due_by")
    search_fields = ("=stripe_dispute_id", "=payment__id", "=payment__stripe_payment_intent_id")
    search_help_text = "Exact match: the dispute id (dp_…), our payment id or the PaymentIntent id."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = readonly_fields = (
        "stripe_dispute_id",
        "payment_link",
        "amount_display",
        "status",
        "reason",
        "evidence_due_by",
        "created_at",
        "updated_at",
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
