"""
Refunds in the support desk: view-only. A refund is issued from its payment's
page (PaymentAdmin's refund view), through refunds.services like the API's.
"""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from backoffice.admin_payments import payments_by_intent, refund_origin
from backoffice.dashboard import STUCK_AFTER
from backoffice.display import status_badge, when
from core.admin_helpers import EstimatedCountPaginator, ViewOnly, admin_link, search_by_identifiers
from payments.currencies import format_amount
from refunds.models import Refund


class StuckFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return (("yes", "Pending for over an hour"),)

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=Refund.Status.PENDING, created_at__lt=timezone.now() - STUCK_AFTER)
        return queryset


class OriginFilter(admin.SimpleListFilter):
    title = "created by"
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return (("staff", "Staff (admin or API)"), ("stripe", "Stripe (its dashboard)"))

    def queryset(self, request, queryset):
        if self.value() == "staff":
            return queryset.filter(created_by__isnull=False)
        if self.value() == "stripe":
            return queryset.filter(created_by__isnull=True)
        return queryset


@admin.register(Refund)
class RefundAdmin(ViewOnly, admin.ModelAdmin):
    list_display = (
        "short_id",
        "status_display",
        "payment_link",
        "amount_display",
        "origin",
        "reason",
        "short_note",
        "created",
    )
    list_filter = ("status", StuckFilter, OriginFilter, "reason", "created_at")
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("payment", "created_by")
    sortable_by = ("created",)
    search_fields = ("=id", "=stripe_refund_id", "=payment__id", "=payment__stripe_payment_intent_id")
    search_help_text = "Exact match: the refund id, Stripe's refund id (re_…), our payment id or the PaymentIntent id."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    fields = readonly_fields = (
        "id",
        "stripe_refund_id",
        "payment_link",
        "status_display",
        "amount_display",
        "reason",
        "note",
        "origin",
        "failure_reason",
        "idempotency_key",
        "created",
        "updated",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment", "created_by")

    def get_search_results(self, request, queryset, search_term):
        queryset = search_by_identifiers(
            queryset,
            search_term,
            uuid_fields=("pk", "payment_id"),
            text_fields=("stripe_refund_id",),
            related={"payment_id": payments_by_intent},
        )
        return queryset, False

    @admin.display(description="Refund")
    def short_id(self, obj):
        # The full id is in the title and on the refund's page; search takes it whole.
        return format_html('<span title="{}">{}</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Status")
    def status_display(self, obj):
        return status_badge(obj.status, "refund")

    @admin.display(description="Payment")
    def payment_link(self, obj):
        return admin_link(obj.payment, obj.payment.stripe_payment_intent_id or obj.payment_id)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.payment.currency)

    @admin.display(description="Created by")
    def origin(self, obj):
        return refund_origin(obj)

    @admin.display(description="Note")
    def short_note(self, obj):
        return Truncator(obj.note).chars(60)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Last changed")
    def updated(self, obj):
        return when(obj.updated_at)
