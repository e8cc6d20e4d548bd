import json

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html

from backoffice.display import when
from core.admin_helpers import ViewOnly
from core.errors import redact_secrets, scrub
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_reprocess


@admin.register(WebhookEvent)
class WebhookEventAdmin(ViewOnly, admin.ModelAdmin):
    """
    Stripe's events as received: read-only, except reprocessing the ones that
    failed (their apply jobs are queued again for the workers).
    """

    list_display = (
        "stripe_event_id",
        "type",
        "outcome",
        "attempts",
        "object_id",
        "payment",
        "received",
        "processed",
    )
    list_filter = ("outcome", "type", "received_at")
    search_fields = ("=stripe_event_id", "=object_id")
    search_help_text = "An event id (evt_…) or the id of the object it is about (pi_…, re_…, dp_…)."
    date_hierarchy = "received_at"
    list_select_related = ("payment",)
    fields = (
        "stripe_event_id",
        "type",
        "outcome",
        "attempts",
        "safe_error",
        "object_id",
        "payment",
        "received",
        "processed",
        "pretty_payload",
    )
    readonly_fields = fields
    actions = ("reprocess",)

    def get_search_results(self, request, queryset, search_term):
        # Exact, case-sensitive matches, so the unique and object_id indexes answer;
        # the default `=` search compares UPPER() of both sides and scans the table.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(stripe_event_id=term) | Q(object_id=term)), False

    def has_reprocess_permission(self, request):
        return request.user.has_perm("webhooks.change_webhookevent")

    @admin.display(description="payload")
    def pretty_payload(self, event):
        # Stripe's objects carry secrets (a PaymentIntent's client_secret): staff never need them.
        payload = redact_secrets(event.payload)
        return format_html("<pre>{}</pre>", json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False))

    @admin.display(description="received", ordering="received_at")
    def received(self, event):
        return when(event.received_at)

    @admin.display(description="processed", ordering="processed_at")
    def processed(self, event):
        return when(event.processed_at)

    @admin.display(description="error")
    def safe_error(self, event):
        # Stored errors are safe text; one kept before they were may still quote a row.
        return scrub(event.error)

    @admin.action(description="Reprocess the selected failed events", permissions=["reprocess"])
    def reprocess(self, request, queryset):
        queued = sum(
            webhook_event_reprocess(event=event).outcome == WebhookEvent.Outcome.PENDING
            for event in queryset.filter(outcome=WebhookEvent.Outcome.FAILED)
        )
        if not queued:
            self.message_user(request, "None of the selected events had failed.", messages.WARNING)
            return
        self.message_user(
            request,
            f"Queued {queued} event(s) for the workers: each is pending until applied (reload to see its outcome).",
            messages.SUCCESS,
        )
