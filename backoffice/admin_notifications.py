"""
The support desk's side of notifications to the storefront: endpoints (made and
edited by staff with the endpoint permissions; the secret shown once, when made
or rotated), the delivery log per endpoint and per payment (every attempt with
its status code, duration and the start of the answer), manual redelivery,
"send a test event", and disabling an endpoint. Every action calls
notifications.services, as the jobs do.
"""

from __future__ import annotations

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from core.admin_helpers import EstimatedCountPaginator, ViewOnly, admin_link
from notifications import services
from notifications.models import (
    SUBSCRIBABLE_TYPES,
    Delivery,
    DeliveryAttempt,
    Endpoint,
    EventType,
)
from notifications.payloads import event_body

STATE_COLOURS = {
    Delivery.State.PENDING: "#9a6700",
    Delivery.State.DELIVERED: "#1a7f37",
    Delivery.State.FAILED: "#cf222e",
}


def state_badge(state: str):
    return format_html('<strong class="delivery-{}" style="color: {}">{}</strong>', state, STATE_COLOURS[state], state)


# --- Endpoints ----------------------------------------------------------------


class EndpointForm(forms.ModelForm):
    # The model's validators still refuse anything but http and https.
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https", help_text=Endpoint.url.field.help_text)
    event_types = forms.MultipleChoiceField(
        choices=[(value, EventType(value).label) for value in SUBSCRIBABLE_TYPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="The notifications it wants.",
    )

    class Meta:
        model = Endpoint
        fields = ("url", "description", "owner", "event_types", "enabled")


class FailingFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "failing"

    def lookups(self, request, model_admin):
        return (("yes", "Failing or disabled for failing"), ("no", "Healthy"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(failing_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(failing_since__isnull=True)
        return queryset


# How many of an endpoint's latest deliveries its page lists; the Deliveries list has them all.
LATEST_DELIVERIES = 25


def last_answer(delivery: Delivery) -> str:
    if not delivery.attempts:
        return "not tried yet"
    answer = str(delivery.last_status_code) if delivery.last_status_code else "no answer"
    return f"{answer}: {delivery.last_error}" if delivery.last_error else answer


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("url", "owner", "enabled", "health", "event_type_count", "created_at")
    list_filter = ("enabled", FailingFilter)
    list_select_related = ("owner",)
    search_fields = ("url", "description", "=owner__username", "=owner__email")
    raw_id_fields = ("owner",)
    actions = ("send_test_event", "redeliver_failed", "disable", "enable")
    change_form_template = "admin/notifications/endpoint/change_form.html"

    def get_fields(self, request, obj=None):
        fields = ["url", "description", "owner", "event_types", "enabled"]
        if obj is not None:
            fields += ["health", "secret_made", "created_at", "delivery_log"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Enabling and disabling go through the services (buttons and actions), which keep the health record.
        return ("enabled", "health", "secret_made", "created_at", "delivery_log")

    def has_manage_permission(self, request):
        return request.user.has_perm("notifications.change_endpoint")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/rotate-secret/",
                wrap(require_POST(self.rotate_secret_view)),
                name="notifications_endpoint_rotate",
            ),
            path(
                "<int:object_id>/send-test/",
                wrap(require_POST(self.send_test_view)),
                name="notifications_endpoint_test",
            ),
            path(
                "<int:object_id>/disable/", wrap(require_POST(self.disable_view)), name="notifications_endpoint_disable"
            ),
            path("<int:object_id>/enable/", wrap(require_POST(self.enable_view)), name="notifications_endpoint_enable"),
            *super().get_urls(),
        ]

    @admin.display(description="Health")
    def health(self, obj):
        if obj.disabled_for_failing:
            return format_html('<strong style="color: #cf222e">{}</strong>', obj.disabled_reason)
        if not obj.enabled:
            return obj.disabled_reason or "Disabled."
        if obj.failing_since:
            return format_html(
                '<strong style="color: #9a6700">Failing since {} UTC</strong>', f"{obj.failing_since:%Y-%m-%d %H:%M}"
            )
        return "OK"

    @admin.display(description="Types")
    def event_type_count(self, obj):
        return f"{len(obj.event_types)} of {len(SUBSCRIBABLE_TYPES)}"

    @admin.display(description="Secret")
    def secret_made(self, obj):
        # Never the secret itself: it is shown once, when made or rotated.
        note = "Shown once when made; rotate it to get a new one."
        return f"Made {obj.secret_created_at:%Y-%m-%d %H:%M} UTC. {note}"

    @admin.display(description="Delivery log")
    def delivery_log(self, obj):
        deliveries = list(obj.deliveries.select_related("event").order_by("-pk")[:LATEST_DELIVERIES])
        everything = reverse("admin:notifications_delivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    admin_link(d, f"#{d.pk}"),
                    d.event.type,
                    d.event.payment_id or "—",
                    state_badge(d.state),
                    d.attempts,
                    last_answer(d),
                )
                for d in deliveries
            ),
        )
        return format_html(
            '<table class="delivery-log"><thead><tr><th>Delivery</th><th>Event</th><th>Payment</th><th>State</th>'
            "<th>Attempts</th><th>Last answer</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">Every delivery of this endpoint</a> (latest {} above)</p>',
            rows or format_html('<tr><td colspan="6">{}</td></tr>', "None yet."),
            everything,
            LATEST_DELIVERIES,
        )

    def response_add(self, request, obj, post_url_continue=None):
        # Instead of the usual redirect: the one page that shows the new secret.
        return self._secret_page(request, obj, obj.secret, made=True)

    def _secret_page(self, request, endpoint: Endpoint, secret: str, *, made: bool):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": endpoint,
            "title": "The endpoint's secret",
            "secret": secret,
            "made": made,
            "change_url": reverse("admin:notifications_endpoint_change", args=[endpoint.pk]),
        }
        response = TemplateResponse(request, "admin/notifications/endpoint/secret.html", context)
        # Not kept by the browser or any cache on the way: this page is the only time it is shown.
        response["Cache-Control"] = "no-store"
        return response

    def _endpoint_to_change(self, request, object_id) -> Endpoint:
        endpoint = get_object_or_404(Endpoint, pk=object_id)
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def _back(self, endpoint):
        return HttpResponseRedirect(reverse("admin:notifications_endpoint_change", args=[endpoint.pk]))

    def rotate_secret_view(self, request, object_id):
        endpoint = self._endpoint_to_change(request, object_id)
        secret = services.endpoint_rotate_secret(endpoint=endpoint)
        self.log_change(request, endpoint, "Secret rotated; the new one was shown once.")
        return self._secret_page(request, endpoint, secret, made=False)

    def send_test_view(self, request, object_id):
        endpoint = self._endpoint_to_change(request, object_id)
        delivery = services.endpoint_send_test(endpoint=endpoint)
        self.message_user(
            request,
            format_html("A test event is on its way: see {} for how the endpoint answers.", admin_link(delivery)),
            messages.SUCCESS,
        )
        return self._back(endpoint)

    def disable_view(self, request, object_id):
        endpoint = self._endpoint_to_change(request, object_id)
        services.endpoint_disable(endpoint=endpoint, reason=f"Disabled by {request.user.get_username()}.")
        self.log_change(request, endpoint, "Disabled.")
        self.message_user(request, "Disabled: it gets no notifications until it is enabled.", messages.WARNING)
        return self._back(endpoint)

    def enable_view(self, request, object_id):
        endpoint = self._endpoint_to_change(request, object_id)
        services.endpoint_enable(endpoint=endpoint)
        self.log_change(request, endpoint, "Enabled.")
        self.message_user(
            request,
            "Enabled. What happened meanwhile was not sent: redeliver its failed deliveries, or let the "
            "storefront read the feed.",
            messages.SUCCESS,
        )
        return self._back(endpoint)

    @admin.action(description="Send a test event", permissions=["manage"])
    def send_test_event(self, request, queryset):
        for endpoint in queryset:
            services.endpoint_send_test(endpoint=endpoint)
        self.message_user(request, f"Test events queued for {queryset.count()} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Redeliver every failed delivery", permissions=["manage"])
    def redeliver_failed(self, request, queryset):
        total = sum(services.endpoint_redeliver_failed(endpoint=endpoint) for endpoint in queryset)
        self.message_user(request, f"{total} failed deliveries queued again.", messages.SUCCESS)

    @admin.action(description="Disable", permissions=["manage"])
    def disable(self, request, queryset):
        for endpoint in queryset:
            services.endpoint_disable(endpoint=endpoint, reason=f"Disabled by {request.user.get_username()}.")
        self.message_user(request, f"{queryset.count()} endpoint(s) disabled.", messages.WARNING)

    @admin.action(description="Enable", permissions=["manage"])
    def enable(self, request, queryset):
        for endpoint in queryset:
            services.endpoint_enable(endpoint=endpoint)
        self.message_user(request, f"{queryset.count()} endpoint(s) enabled.", messages.SUCCESS)


# --- The delivery log -----------------------------------------------------------


class AttemptInline(ViewOnly, admin.TabularInline):
    model = DeliveryAttempt
    verbose_name_plural = "Attempts (newest first)"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("attempted_at", "status_code", "duration", "delivered", "error", "response_excerpt")

    def has_view_permission(self, request, obj=None):
        # The attempts are the delivery's log: whoever may see the delivery sees them.
        return request.user.has_perm("notifications.view_delivery")

    @admin.display(description="Duration")
    def duration(self, obj):
        return f"{obj.duration_ms} ms"


@admin.register(Delivery)
class DeliveryAdmin(ViewOnly, admin.ModelAdmin):
    """Every delivery of an event to an endpoint; read-only, except redelivering."""

    list_display = (
        "pk",
        "event_type",
        "endpoint",
        "payment",
        "state_display",
        "attempts",
        "last_answer_display",
        "last_attempt_at",
        "next_attempt_at",
    )
    list_filter = ("state", "event__type", "endpoint")
    list_select_related = ("event", "endpoint")
    search_fields = ("=event__payment__id",)
    search_help_text = "Exact match: our payment id, or the event's id (ntf_…)."
    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    sortable_by = ("pk",)
    inlines = (AttemptInline,)
    fields = readonly_fields = (
        "event_link",
        "endpoint",
        "payment",
        "state_display",
        "attempts",
        "last_answer_display",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
        "created_at",
        "body",
    )
    actions = ("redeliver",)
    change_form_template = "admin/notifications/delivery/change_form.html"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("ntf_"):
            return queryset.filter(event_id__in=_uuid_or_none(term[4:])), False
        return queryset.filter(event__payment_id__in=_uuid_or_none(term)), False

    def has_redeliver_permission(self, request):
        return request.user.has_perm("notifications.change_delivery")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/redeliver/",
                wrap(require_POST(self.redeliver_view)),
                name="notifications_delivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_redeliver"] = self.has_redeliver_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def redeliver_view(self, request, object_id):
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        delivery = services.delivery_redeliver(delivery=get_object_or_404(Delivery, pk=object_id))
        self.log_change(request, delivery, "Redelivered by hand.")
        self.message_user(request, "Queued to be sent again now, with the same webhook-id.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:notifications_delivery_change", args=[delivery.pk]))

    @admin.action(description="Redeliver the selected deliveries", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        for delivery in queryset:
            services.delivery_redeliver(delivery=delivery)
        self.message_user(request, f"{queryset.count()} deliveries queued again.", messages.SUCCESS)

    @admin.display(description="Event")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="Event")
    def event_link(self, obj):
        return f"{obj.event.type}, sequence {obj.event.sequence}, id {obj.event.public_id}"

    @admin.display(description="Payment")
    def payment(self, obj):
        if not obj.event.payment_id:
            return "—"
        url = reverse("admin:payments_payment_change", args=[obj.event.payment_id])
        return format_html('<a href="{}">{}</a>', url, obj.event.payment_id)

    @admin.display(description="State")
    def state_display(self, obj):
        return state_badge(obj.state)

    @admin.display(description="Last answer")
    def last_answer_display(self, obj):
        return last_answer(obj)

    @admin.display(description="What it sends")
    def body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(event_body(obj.event), indent=2, ensure_ascii=False))


def _uuid_or_none(term: str) -> list:
    try:
        return [uuid.UUID(term)]
    except ValueError:
        return []
