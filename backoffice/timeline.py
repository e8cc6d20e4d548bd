"""
One payment's whole story, newest first: Stripe's events about it, its refunds,
disputes and capture, the notifications sent to the storefront, and what staff
did to it (who, and why: Django's admin log). A constant number of queries
(one per source), each on an index of that source's payment column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Prefetch, Q
from django.template.defaultfilters import pluralize
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from backoffice.admin_notifications import last_answer, state_badge
from backoffice.display import status_badge, stripe_dashboard_url, when
from core.admin_helpers import admin_link
from core.errors import scrub
from notifications.models import Delivery, Event
from payments.currencies import format_amount
from payments.models import Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent

# Per source, at most this many rows: a payment with more has a very long story.
PER_SOURCE = 200


@dataclass
class Entry:
    """One line of the timeline: when, what kind of thing, what happened, and who (staff) if anyone."""

    at: datetime
    kind: str
    text: str
    who: str = ""
    detail: str = ""
    url: str | None = None
    stripe_url: str | None = None
    badge: str = ""
    # Ties (the same second) keep the order they were added in, reversed.
    order: int = field(default=0, compare=False)

    @property
    def when(self) -> str:
        return when(self.at)


def admin_url(obj) -> str | None:
    """The object's page in this admin; None when its model has none here."""
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def payment_timeline(payment: Payment) -> list[Entry]:
    """Everything that happened to `payment`, newest first (see the module's docstring)."""
    money = lambda amount: format_amount(amount, payment.currency)  # noqa: E731
    entries: list[Entry] = []
    creator = f"by the API account {payment.user.get_username()}" if payment.user_id else "first seen through Stripe"
    entries.append(
        Entry(at=payment.created_at, kind="Payment", text=f"Payment of {money(payment.amount)} created", detail=creator)
    )

    events = WebhookEvent.objects.filter(payment=payment)
    if payment.stripe_payment_intent_id:
        events = WebhookEvent.objects.filter(Q(payment=payment) | Q(object_id=payment.stripe_payment_intent_id))
    for event in events.order_by("-received_at")[:PER_SOURCE]:
        detail = event.stripe_event_id
        if event.outcome != WebhookEvent.Outcome.PROCESSED:
            # An error stored before errors were made safe may still quote a row: scrubbed here too.
            detail += f" ({event.outcome}{': ' + scrub(event.error)[:200] if event.error else ''})"
        entries.append(
            Entry(
                at=event.received_at,
                kind="Stripe event",
                text=event.type,
                detail=detail,
                url=admin_url(event),
                stripe_url=stripe_dashboard_url(event.stripe_event_id),
            )
        )

    refunds = payment.refunds.select_related("created_by").order_by("-created_at")[:PER_SOURCE]
    refund_ids = []
    for refund in refunds:
        refund_ids.append(str(refund.pk))
        who = refund.created_by.get_username() if refund.created_by_id else "Stripe (its dashboard)"
        reason = refund.get_reason_display().capitalize() if refund.reason else "No reason given"
        detail = reason + (f". Note: {refund.note}" if refund.note else "")
        if refund.failure_reason:
            detail += f". Failed: {refund.failure_reason}"
        entries.append(
            Entry(
                at=refund.created_at,
                kind="Refund",
                text=f"Refund of {money(refund.amount)}",
                who=who,
                detail=detail,
                url=admin_url(refund),
                stripe_url=stripe_dashboard_url(refund.stripe_refund_id or ""),
                badge=status_badge(refund.status, "refund"),
            )
        )

    for dispute in payment.disputes.order_by("-created_at")[:PER_SOURCE]:
        due = f"; evidence due {when(dispute.evidence_due_by)}" if dispute.evidence_due_by else ""
        entries.append(
            Entry(
                at=dispute.created_at,
                kind="Dispute",
                text=f"Dispute of {money(dispute.amount)} ({dispute.reason or 'no reason given'})",
                detail=f"{dispute.stripe_dispute_id}{due}",
                url=admin_url(dispute),
                stripe_url=stripe_dashboard_url(dispute.stripe_dispute_id),
                badge=status_badge(dispute.status, "dispute"),
            )
        )

    if payment.capture_method == Payment.CaptureMethod.MANUAL and payment.capture_started_at:
        entries.append(
            Entry(
                at=payment.capture_started_at,
                kind="Capture",
                text="Capture requested",
                detail=f"{money(payment.amount_received)} captured of {money(payment.amount)} authorized"
                if payment.amount_received
                else "not confirmed by Stripe yet",
            )
        )

    deliveries = Delivery.objects.select_related("endpoint").order_by("pk")
    notifications = (
        Event.objects.filter(payment=payment)
        .defer("payload")
        .prefetch_related(Prefetch("deliveries", queryset=deliveries))
        .order_by("-sequence")[:PER_SOURCE]
    )
    for notification in notifications:
        # Each delivery links to its log (every attempt, and redelivery).
        sent = format_html_join(
            mark_safe("<br>"),
            "{} to {}: {} ({} attempt{}, {})",
            (
                (
                    admin_link(d, f"#{d.pk}"),
                    d.endpoint.url,
                    state_badge(d.state),
                    d.attempts,
                    pluralize(d.attempts),
                    last_answer(d),
                )
                for d in notification.deliveries.all()
            ),
        )
        entries.append(
            Entry(
                at=notification.created_at,
                kind="Notification",
                text=f"Storefront told: {notification.type}",
                detail=sent or "no endpoint wanted it",
                url=admin_url(notification),
            )
        )

    payment_type = ContentType.objects.get_for_model(Payment)
    refund_type = ContentType.objects.get_for_model(Refund)
    actions = (
        LogEntry.objects.filter(
            Q(content_type=payment_type, object_id=str(payment.pk))
            | Q(content_type=refund_type, object_id__in=refund_ids)
        )
        .select_related("user")
        .order_by("-action_time")[:PER_SOURCE]
    )
    for action in actions:
        entries.append(
            Entry(
                at=action.action_time,
                kind="Staff action",
                text=action.get_change_message() or action.object_repr,
                who=action.user.get_username(),
            )
        )

    for n, entry in enumerate(entries):
        entry.order = n
    return sorted(entries, key=lambda entry: (entry.at, entry.order), reverse=True)


def charge_ids(payment: Payment) -> list[str]:
    """The charge ids that Stripe's stored events about this payment name (`latest_charge`, charge events)."""
    found: list[str] = []
    events = WebhookEvent.objects.filter(payment=payment).order_by("-received_at")[:PER_SOURCE]
    for event in events.only("object_id", "payload"):
        obj = (event.payload.get("data") or {}).get("object") or {}
        for candidate in (event.object_id, obj.get("latest_charge"), obj.get("charge")):
            if isinstance(candidate, dict):
                candidate = candidate.get("id")
            if isinstance(candidate, str) and candidate.startswith(("ch_", "py_")) and candidate not in found:
                found.append(candidate)
    return found
