"""
The transactional outbox's intake: Django signals on payments.Payment,
refunds.Refund and payments.Dispute (connected by NotificationsConfig.ready, so
neither payments nor refunds knows of notifications) compare each saved row
with the row the database held before the save, and write the events the
change makes, in the same transaction (notifications.services.event_record).

- `pre_save` reads the watched fields of the row as committed so far, locking
  it (`SELECT … FOR UPDATE`, a no-op for the services, which already hold that
  lock): two saves of one row can never both see the old state, so one change
  makes one event, however many Stripe events, retries or workers lead to it.
- `post_save` turns the difference into event types (`payment_event_types`…).
  News that changes nothing (a duplicate event, older news) makes none.
- A change rolled back takes its events, their deliveries and their jobs with it.

A refund or dispute is saved before its payment follows (the refunded amount
is summed after the refund is saved): such an event is written with the
payment as it stands, and brought up to date when the payment is saved later in
the same transaction (services.events_refresh_payment).
"""

from __future__ import annotations

import threading

from django.db import connections
from django.db.models.signals import post_save, pre_save

from notifications.models import EventType
from notifications.services import event_record, events_refresh_payment
from payments.models import Dispute, Payment
from refunds.models import Refund

# The fields whose change may make an event, per model.
WATCHED = {
    Payment: ("status", "refunded_amount", "failure_code", "failure_message"),
    Refund: ("status",),
    Dispute: ("status",),
}
_BEFORE = "_notifications_row_before"
# The save changes none of the watched fields (update_fields without them, or a fixture load).
_UNWATCHED = object()

# Per thread (so per database connection): the events about a payment that a
# refund's or dispute's save wrote in the current transaction, to bring up to
# date when the payment is saved; and the refund that succeeded last, for the
# payment.refunded its payment's save makes.
_pending = threading.local()


def connect() -> None:
    for model in WATCHED:
        pre_save.connect(remember_row, sender=model, dispatch_uid=f"notifications-before-{model.__name__}")
    post_save.connect(payment_saved, sender=Payment, dispatch_uid="notifications-payment")
    post_save.connect(refund_saved, sender=Refund, dispatch_uid="notifications-refund")
    post_save.connect(dispute_saved, sender=Dispute, dispatch_uid="notifications-dispute")


def remember_row(sender, instance, raw=False, using="default", update_fields=None, **kwargs):
    """pre_save: keep the watched fields of the row as the database holds it (None for a new row) on the instance."""
    fields = WATCHED[sender]
    if raw or (update_fields is not None and not set(update_fields) & set(fields)):
        instance.__dict__[_BEFORE] = _UNWATCHED
        return
    if instance._state.adding:
        instance.__dict__[_BEFORE] = None
        return
    rows = sender._base_manager.using(using).filter(pk=instance.pk)
    if connections[using].in_atomic_block:
        # Outside a transaction (autocommit) there is no lock to take: each statement is its own.
        rows = rows.select_for_update()
    instance.__dict__[_BEFORE] = rows.values(*fields).first()


def _before(instance, created: bool):
    before = instance.__dict__.pop(_BEFORE, _UNWATCHED)
    if before is _UNWATCHED:
        return _UNWATCHED
    return None if created else before


# --- Payments -------------------------------------------------------------------


def payment_event_types(before: dict | None, payment: Payment) -> list[str]:
    """
    The events a payment's save makes, in order: `before` holds its watched
    fields as they were (None: a new row). A payment that reaches a paid status
    from an authorization (or was made for manual capture) is `captured`, else
    `succeeded`; `refunded` whenever the refunded amount grows. Pure.
    """
    old_status = before["status"] if before else None
    status = payment.status
    types = []
    if status == Payment.Status.REQUIRES_CAPTURE and old_status != status:
        types.append(EventType.PAYMENT_REQUIRES_CAPTURE)
    if status in Payment.PAID and old_status not in Payment.PAID:
        # capture_method arrives with the capture work (issue 14); before it, every payment captures at once.
        manual = getattr(payment, "capture_method", "automatic") == "manual"
        authorized_first = old_status == Payment.Status.REQUIRES_CAPTURE or manual
        types.append(EventType.PAYMENT_CAPTURED if authorized_first else EventType.PAYMENT_SUCCEEDED)
    if status == Payment.Status.FAILED:
        # A second declined attempt is news too; the same decline told twice is not.
        failure_changed = before is None or (before["failure_code"], before["failure_message"]) != (
            payment.failure_code,
            payment.failure_message,
        )
        if old_status != status or failure_changed:
            types.append(EventType.PAYMENT_FAILED)
    if status == Payment.Status.CANCELED and old_status != status:
        types.append(EventType.PAYMENT_CANCELED)
    if status in Payment.PAID and payment.refunded_amount > (before["refunded_amount"] if before else 0):
        types.append(EventType.PAYMENT_REFUNDED)
    return types


def payment_saved(sender, instance, created=False, raw=False, **kwargs):
    before = _before(instance, created)
    if raw:
        return
    if before is not _UNWATCHED:
        for event_type in payment_event_types(before, instance):
            refund = _refund_concerned(instance) if event_type == EventType.PAYMENT_REFUNDED else None
            event_record(event_type=event_type, payment=instance, refund=refund)
    waiting = _waiting_events().pop(instance.pk, None)
    if waiting is not None:
        transaction_id, event_ids = waiting
        events_refresh_payment(payment=instance, event_ids=event_ids, transaction_id=transaction_id)


def _refund_concerned(payment: Payment) -> Refund | None:
    """The refund whose success grew the refunded amount: the one saved just now, else the latest succeeded."""
    succeeded = Refund.objects.filter(payment=payment, status=Refund.Status.SUCCEEDED)
    payment_id, refund_id = getattr(_pending, "succeeded_refund", (None, None))
    _pending.succeeded_refund = (None, None)
    if payment_id == payment.pk:
        refund = succeeded.filter(pk=refund_id).first()
        if refund is not None:
            return refund
    return succeeded.order_by("-updated_at", "-created_at").first()


# --- Refunds and disputes -----------------------------------------------------


def refund_saved(sender, instance, created=False, raw=False, **kwargs):
    before = _before(instance, created)
    if raw or before is _UNWATCHED:
        return
    old_status = before["status"] if before else None
    if instance.status == Refund.Status.SUCCEEDED and old_status != instance.status:
        # Its payment's refunded amount follows in this transaction: that save tells of it (payment.refunded).
        _pending.succeeded_refund = (instance.payment_id, instance.pk)
    if instance.status == Refund.Status.FAILED and old_status != instance.status:
        _record_about_payment(EventType.REFUND_FAILED, payment_id=instance.payment_id, refund=instance)


def dispute_saved(sender, instance, created=False, raw=False, **kwargs):
    before = _before(instance, created)
    if raw or before is _UNWATCHED:
        return
    if before is None:
        _record_about_payment(EventType.DISPUTE_CREATED, payment_id=instance.payment_id, dispute=instance)
    was_closed = before is not None and before["status"] in Dispute.CLOSED_STATUSES
    if instance.status in Dispute.CLOSED_STATUSES and not was_closed:
        _record_about_payment(EventType.DISPUTE_CLOSED, payment_id=instance.payment_id, dispute=instance)


def _record_about_payment(event_type: str, *, payment_id, refund=None, dispute=None) -> None:
    # The payment as this transaction holds it now; brought up to date if it is saved later in it.
    payment = Payment.objects.get(pk=payment_id)
    event, transaction_id = event_record(event_type=event_type, payment=payment, refund=refund, dispute=dispute)
    # Only this transaction's events can be brought up to date: what earlier ones left is dropped.
    waiting = {key: value for key, value in _waiting_events().items() if value[0] == transaction_id}
    waiting[payment_id] = (transaction_id, [*waiting.get(payment_id, (transaction_id, []))[1], event.pk])
    _pending.events = waiting


def _waiting_events() -> dict:
    if not hasattr(_pending, "events"):
        _pending.events = {}
    return _pending.events
