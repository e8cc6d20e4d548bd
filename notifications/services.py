"""
Notification use cases: writing an event with its deliveries in the transaction
of the change (the outbox, fed by notifications.outbox), sending one delivery
(the `notifications.deliver` job), and what staff do in the admin (redeliver,
send a test, rotate a secret, disable or enable an endpoint).

Ordering: every event takes the next `sequence` from one counter row
(EventSequence) whose lock lasts until its transaction ends. So events commit in
the order of their sequence, with no gaps, and a consumer reading the feed
`after=N` can never miss an event that committed after one with a higher
sequence. It is taken once the rows of the change are locked (the payment's,
then its refund's or dispute's), so it does not deadlock with those locks.

No lock is ever held across an HTTP call: a delivery is claimed under its row
lock (a lease, `sending_started_at`), sent, then its answer recorded under the
lock again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from procrastinate.contrib.django import app

from core.jobs import job_defer_in_transaction
from core.leases import lease_is_live
from notifications import sending
from notifications.models import Delivery, DeliveryAttempt, Endpoint, Event, EventSequence, EventType
from notifications.payloads import event_body_bytes, event_data, payment_data

DELIVER_TASK = "notifications.deliver"
QUEUE = "notifications"
# A job that starts this much before its delivery is due (clocks of two machines) still sends it.
EARLY_TOLERANCE = timedelta(seconds=1)


# --- Writing events (the outbox) ----------------------------------------------


def _next_sequence() -> tuple[int, int]:
    """
    The next sequence, and this transaction's id (txid_current). Locks the
    counter row until the transaction ends. The row is made on first use (and
    again after a test run empties the table).
    """
    table = EventSequence._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, last_value) VALUES (1, 1) "
            f"ON CONFLICT (id) DO UPDATE SET last_value = {table}.last_value + 1 "
            "RETURNING last_value, txid_current()"
        )
        sequence, transaction_id = cursor.fetchone()
    return sequence, transaction_id


def event_record(*, event_type: str, payment, refund=None, dispute=None) -> tuple[Event, int]:
    """
    Write one event about `payment` (and the `refund` or `dispute` concerned)
    and a pending delivery, with its job, for each enabled endpoint that wants
    `event_type` and hears of the payment (its owner's, and those with no
    owner). Answers (event, the id of the transaction that wrote it).

    Must run in the transaction of the change it tells of (notifications.outbox
    calls it from the models' post_save): a rolled-back change takes its event,
    deliveries and jobs with it. Locks: the sequence counter, until the
    transaction ends. No network call: the jobs send, after commit.
    """
    # No savepoint of its own: the change and its event stand or fall together.
    with transaction.atomic(savepoint=False):
        sequence, transaction_id = _next_sequence()
        event = Event.objects.create(
            type=event_type,
            sequence=sequence,
            payment=payment,
            user_id=payment.user_id if payment is not None else None,
            payload=event_data(payment=payment, refund=refund, dispute=dispute),
        )
        endpoints = Endpoint.objects.filter(enabled=True, event_types__contains=[event_type]).filter(
            Q(owner__isnull=True) | Q(owner_id=event.user_id)
        )
        _deliveries_queue(event, endpoints)
    return event, transaction_id


def events_refresh_payment(*, payment, event_ids: list, transaction_id: int) -> int:
    """
    Put the payment as it is now into events this same transaction wrote
    earlier about one of its refunds or disputes: a refund is saved before its
    payment's refunded amount follows, and the storefront must be told the
    payment as the transaction commits it. Events of another transaction (one
    rolled back, or committed) are never touched. Answers how many were updated.
    """
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET payload = jsonb_set(payload, '{{payment}}', %s::jsonb) "
            "WHERE id = ANY(%s) AND txid_current() = %s",
            [json.dumps(payment_data(payment)), list(event_ids), transaction_id],
        )
        return cursor.rowcount


def _deliveries_queue(event: Event, endpoints) -> list[Delivery]:
    now = timezone.now()
    deliveries = [
        Delivery.objects.create(endpoint=endpoint, event=event, next_attempt_at=now) for endpoint in endpoints
    ]
    for delivery in deliveries:
        _queue_attempt(delivery, at=now, due=now)
    return deliveries


def _queue_attempt(delivery: Delivery, *, at: datetime, due: datetime) -> None:
    """Queue the job that sends `delivery` at `at`, for the attempt due at `due` (in the caller's transaction)."""
    # A job due now is queued with no time at all: any worker takes it at once.
    schedule_at = at if at > timezone.now() else None
    # On Django's connection even in a worker (whose app defers on a pool of its own):
    # the job commits with the delivery, or a worker may look for it before it exists.
    job_defer_in_transaction(
        app.configure_task(DELIVER_TASK, queue=QUEUE, schedule_at=schedule_at),
        delivery_id=delivery.pk,
        due=due.isoformat(),
    )


# --- Sending one delivery (the job) -------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt: what to send, and the lease that says it is ours."""

    delivery_id: int
    url: str
    body: bytes
    headers: dict
    lease: datetime
    due: datetime


def _lease_seconds() -> float:
    # Connecting, sending and reading may each take the whole timeout; then some slack.
    return 3 * settings.NOTIFICATIONS_TIMEOUT + 5


def delivery_attempt(*, delivery_id: int, due: str) -> str:
    """
    The `notifications.deliver` job: one attempt at the delivery, if it is still
    the attempt due at `due` (an ISO datetime); answers what happened, in words.

    Claim under the delivery's row lock (nothing to do if it was delivered,
    failed, or rescheduled meanwhile; queued again for later if another worker
    holds its lease or it is not due yet), send with no lock held, then record
    the answer under the lock: delivered on a 2xx, else the next attempt is
    scheduled (settings.NOTIFICATIONS_RETRY_SECONDS) or, once they are spent,
    the delivery has failed. The endpoint's health follows (`_endpoint_health`).

    Safe to run twice (a worker that died mid-send has its job run again): the
    storefront may get the notification twice, with the same `webhook-id`, and
    is told so in the README; it is never lost.
    """
    due_at = datetime.fromisoformat(due)
    claim = _delivery_claim(delivery_id=delivery_id, due=due_at)
    if isinstance(claim, str):
        return claim
    answer = sending.post(url=claim.url, body=claim.body, headers=claim.headers, timeout=settings.NOTIFICATIONS_TIMEOUT)
    return _delivery_record(claim=claim, answer=answer)


def _delivery_claim(*, delivery_id: int, due: datetime) -> Claim | str:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("endpoint", "event")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return "no such delivery"
        if not delivery.is_due(due):
            return f"nothing to do: {delivery.state}, next attempt {delivery.next_attempt_at}"
        lease_seconds = _lease_seconds()
        if lease_is_live(delivery.sending_started_at, seconds=lease_seconds, now=now):
            # Another worker is sending it (or died doing so): look again when its lease ends.
            _queue_attempt(delivery, at=delivery.sending_started_at + timedelta(seconds=lease_seconds), due=due)
            return "being sent by another worker"
        if delivery.next_attempt_at > now + EARLY_TOLERANCE:
            _queue_attempt(delivery, at=delivery.next_attempt_at, due=due)
            return "not due yet"
        endpoint, event = delivery.endpoint, delivery.event
        if not endpoint.enabled and event.type != EventType.TEST:
            delivery.give_up("The endpoint is disabled.")
            delivery.save()
            return "endpoint disabled"
        delivery.sending_started_at = now
        delivery.save(update_fields=["sending_started_at"])
        body = event_body_bytes(event)
        headers = sending.signed_headers(
            secrets=endpoint.signing_secrets(now=now), message_id=event.public_id, timestamp=now, body=body
        )
    return Claim(delivery_id=delivery.pk, url=endpoint.url, body=body, headers=headers, lease=now, due=due)


def _delivery_record(*, claim: Claim, answer: sending.Answer) -> str:
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=claim.delivery_id).first()
        if delivery is None:
            return "delivery deleted meanwhile"
        DeliveryAttempt.objects.create(
            delivery=delivery,
            attempted_at=claim.lease,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            delivered=answer.delivered,
            error=answer.error,
            response_excerpt=answer.excerpt,
        )
        ours = delivery.sending_started_at == claim.lease and delivery.is_due(claim.due)
        if delivery.sending_started_at == claim.lease:
            delivery.sending_started_at = None
        if answer.delivered:
            delivery.record_success(at=now, status_code=answer.status_code)
            outcome = f"delivered ({answer.status_code})"
        else:
            delivery.record_failure(at=now, status_code=answer.status_code, error=answer.error)
            outcome = f"failed: {answer.error}"
            if ours:
                next_at = delivery.schedule_retry(at=now, retry_delays=settings.NOTIFICATIONS_RETRY_SECONDS)
                if next_at is not None:
                    _queue_attempt(delivery, at=next_at, due=next_at)
                    outcome += f" next attempt at {next_at.isoformat()}"
                else:
                    outcome += " retries spent: the delivery has failed"
        delivery.save()
        _endpoint_health(endpoint_id=delivery.endpoint_id, delivered=answer.delivered, now=now)
    return outcome


def _endpoint_health(*, endpoint_id: int, delivered: bool, now: datetime) -> None:
    """
    A success clears the endpoint's failing streak. A failure starts one, or,
    when every attempt has failed for NOTIFICATIONS_DISABLE_AFTER_HOURS,
    disables the endpoint (flagged on the dashboard): a storefront gone for days
    is not sent to for ever. Single UPDATEs, no lock held beyond them.
    """
    endpoints = Endpoint.objects.filter(pk=endpoint_id)
    if delivered:
        endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        return
    endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    hours = settings.NOTIFICATIONS_DISABLE_AFTER_HOURS
    failing_for_too_long = endpoints.filter(enabled=True, failing_since__lte=now - timedelta(hours=hours))
    failing_for_too_long.update(
        enabled=False,
        disabled_at=now,
        disabled_reason=f"Disabled by the site: every delivery failed for {hours:g} hours.",
    )


# --- What staff do ------------------------------------------------------------


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """
    Send a delivery again now, whatever came of it before (delivered, failed,
    still retrying), with a fresh round of retries; the storefront gets the same
    `webhook-id`. Locks the delivery row briefly; queues its job in the same
    transaction. Safe to repeat: the attempts already queued for it stand down.
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        delivery.redeliver(now=now)
        delivery.save()
        _queue_attempt(delivery, at=now, due=now)
    return delivery


def endpoint_redeliver_failed(*, endpoint: Endpoint) -> int:
    """Send again every failed delivery of `endpoint` (as `delivery_redeliver`); answers how many."""
    now = timezone.now()
    with transaction.atomic():
        failed = list(endpoint.deliveries.select_for_update().filter(state=Delivery.State.FAILED).order_by("pk"))
        for delivery in failed:
            delivery.redeliver(now=now)
            delivery.save()
            _queue_attempt(delivery, at=now, due=now)
    return len(failed)


def endpoint_send_test(*, endpoint: Endpoint) -> Delivery:
    """
    Send a `notification.test` event to `endpoint` alone, even while it is
    disabled (to check it before enabling it). It names no payment and is in no
    feed. Answers its delivery, whose log shows how the endpoint answered.
    """
    with transaction.atomic():
        sequence, _ = _next_sequence()
        event = Event.objects.create(
            type=EventType.TEST,
            sequence=sequence,
            payload={"payment": None, "message": "A test notification sent from the paymentsite admin."},
        )
        (delivery,) = _deliveries_queue(event, [endpoint])
    return delivery


def endpoint_rotate_secret(*, endpoint: Endpoint) -> str:
    """
    Give the endpoint a new secret and answer it (to be shown once). The old one
    still signs beside it for NOTIFICATIONS_SECRET_OVERLAP_HOURS, so notifications
    verify whichever the storefront holds while it switches. Locks the endpoint row.
    """
    now = timezone.now()
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        secret = endpoint.rotate_secret(now=now, overlap=timedelta(hours=settings.NOTIFICATIONS_SECRET_OVERLAP_HOURS))
        endpoint.save()
    return secret


def endpoint_disable(*, endpoint: Endpoint, reason: str = "Disabled by staff.") -> Endpoint:
    """Stop sending to the endpoint: no new deliveries; its pending ones fail at their next attempt."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.enabled:
            endpoint.disable(now=timezone.now(), reason=reason)
            endpoint.save()
    return endpoint


def endpoint_enable(*, endpoint: Endpoint) -> Endpoint:
    """
    Send to the endpoint again, its failing streak forgotten. What happened while
    it was disabled is not sent: the storefront catches up from the feed, or
    staff redeliver its failed deliveries.
    """
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.enable()
        endpoint.save()
    return endpoint
