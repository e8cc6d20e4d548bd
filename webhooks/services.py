"""
Webhook use cases: receiving a Stripe event (store it once and queue its apply
job, in one transaction), applying it (the job, run by a worker), and
reprocessing the ones that failed. Reconciling with Stripe for the events that
never came is in webhooks.reconcile; the jobs themselves in webhooks.tasks.

The view (webhooks.views) verifies the signature and answers; everything after
that is here. The answer never waits on Stripe or on the handler. Applying an
event runs its type's handler (webhooks.handlers: one service call of the
payments or refunds app); only an event about a PaymentIntent never seen here
makes a call, to read that PaymentIntent, with no lock held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from core.errors import database_error_in, safe_error_text, scrub
from core.jobs import job_defer_in_transaction
from core.signals import stripe_event_applied
from core.storable import unstorable_string_problem
from payments.services import payment_record_stripe_intent
from webhooks.handlers import HANDLERS, EventIgnored, PaymentNotKnownYet, object_problem
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)


# The width of WebhookEvent's id columns; Stripe's ids are far shorter.
MAX_ID_LENGTH = 255
# The longest error kept on an event: the exception's class and first line.
MAX_ERROR_LENGTH = 500


class InvalidEvent(ValueError):
    """A correctly signed body that is not a Stripe event we can store."""


class ApplyFailed(Exception):
    """An attempt to apply an event failed and another will follow (its job is retried, with backoff)."""


def parse_event(body: bytes) -> dict:
    """
    The event (a dict) in a verified request body (bytes). Raises InvalidEvent
    when it is not JSON, lacks a string `id` or `type` (at most 255 characters),
    an integer `created` (Unix seconds), a boolean `livemode` equal to the
    configured key's mode (`sk_live_`/`rk_live_` keys are live, others test) or
    a `data.object`, when the object of a handled type lacks what its handler
    reads (handlers.object_problem), or when it holds text PostgreSQL cannot
    store. Pure: no lock, no write.
    """
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("The body is not JSON.") from exc
    if not isinstance(event, dict):
        raise InvalidEvent("The body is not a JSON object.")
    for name in ("id", "type"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidEvent(f"The event has no {name}.")
        if len(event[name]) > MAX_ID_LENGTH:
            raise InvalidEvent(f"The event's {name} is longer than {MAX_ID_LENGTH} characters.")
    if not isinstance(event.get("created"), int) or isinstance(event["created"], bool):
        raise InvalidEvent("The event has no created time.")
    if not isinstance(event.get("livemode"), bool):
        raise InvalidEvent("The event has no livemode.")
    if event["livemode"] != stripe_key_is_live():
        # A live event on a test endpoint (or the reverse) names objects our key cannot see.
        event_mode, key_mode = ("live", "test") if event["livemode"] else ("test", "live")
        raise InvalidEvent(f"A {event_mode}-mode event, but this site uses a {key_mode} key.")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("The event has no data.object.")
    problem = object_problem(event["type"], data["object"])
    if problem:
        raise InvalidEvent(problem)
    problem = unstorable_string_problem(event)
    if problem:
        raise InvalidEvent(f"The event cannot be stored: {problem}.")
    return event


def stripe_key_is_live() -> bool:
    """Whether STRIPE_SECRET_KEY is a live-mode key (`sk_live_…`, `rk_live_…`) rather than a test one."""
    return settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))


def event_payment_intent_id(stripe_object: dict) -> str | None:
    """
    The PaymentIntent an event's object (`data.object`, a dict) is about: the
    object itself, or the one it names (`payment_intent` of a charge, refund or
    dispute, or of the charge a dispute or refund embeds); None when it names
    none (a customer, a payout, a charge made without a PaymentIntent). Pure.
    """
    if stripe_object.get("object") == "payment_intent":
        return stripe_gateway.id_of(stripe_object.get("id"))
    named = stripe_gateway.id_of(stripe_object.get("payment_intent"))
    charge = stripe_object.get("charge")
    if not named and isinstance(charge, dict):
        named = stripe_gateway.id_of(charge.get("payment_intent"))
    return named


def apply_lock(stripe_object: dict) -> str:
    """
    The procrastinate lock of an event's apply job: its PaymentIntent's id, so a
    worker runs the events of one payment one at a time; else the object's own id.
    """
    return event_payment_intent_id(stripe_object) or str(stripe_object.get("id") or "")[:MAX_ID_LENGTH]


def webhook_event_receive(*, event: dict) -> int | None:
    """
    Store a verified event (a dict, as `parse_event` answers it) under its
    Stripe id as `pending`, and queue its apply job (webhooks.tasks.apply_event,
    under `apply_lock`) in the same statement: both are committed, or neither.
    Answers the new event's id; None when an event with that id was stored
    before, whatever its outcome: then nothing changes and nothing is queued.

    One SQL statement (an INSERT … ON CONFLICT DO NOTHING and procrastinate's
    own defer function on the row it returns) is one round trip and atomic by
    itself; the workers are woken once it has committed (`_wake_workers`; see
    migration 0003): Stripe's acknowledgement is the hot path (BENCHMARKS.md,
    the background engine). Two copies arriving together queue on the unique index:
    the second waits for the first to commit, then inserts and queues nothing.
    Raises DatabaseError when the event cannot be stored (the view answers 500:
    Stripe delivers it again). Locks: none beyond the new rows. No network
    call, no handler. Safe to retry: that is what Stripe's redeliveries are.
    """
    from webhooks.tasks import apply_event

    with connection.cursor() as cursor:
        cursor.execute(
            _RECEIVE_SQL,
            {
                "stripe_event_id": event["id"],
                "type": event["type"],
                "payload": json.dumps(event),
                "object_id": str(event["data"]["object"].get("id") or "")[:MAX_ID_LENGTH],
                "queue": apply_event.queue,
                "task_name": apply_event.name,
                "priority": apply_event.priority,
                "lock": apply_lock(event["data"]["object"]),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    event_id, job_id = row
    _wake_workers(job_id=job_id, queue=apply_event.queue)
    return event_id


# The event row and its job, as WebhookEvent's defaults and `_queue_apply` would write them.
_RECEIVE_SQL = f"""
    WITH stored AS (
        INSERT INTO {WebhookEvent._meta.db_table}
            (stripe_event_id, type, payload, object_id, received_at, outcome, attempts, error)
        VALUES
            (%(stripe_event_id)s, %(type)s, %(payload)s::jsonb, %(object_id)s, now(),
             '{WebhookEvent.Outcome.PENDING}', 0, '')
        ON CONFLICT (stripe_event_id) DO NOTHING
        RETURNING id
    )
    SELECT stored.id, (procrastinate_defer_jobs_v1(ARRAY[ROW(
        %(queue)s, %(task_name)s, %(priority)s, %(lock)s, NULL,
        jsonb_build_object('event_id', stored.id), NULL
    )::procrastinate_job_to_defer_v1]))[1]
    FROM stored
"""


def _queue_apply(event: WebhookEvent) -> None:
    """Queue the event's apply job on the caller's transaction (Django's connection): it commits with it."""
    from webhooks.tasks import apply_event

    job_id = job_defer_in_transaction(apply_event.configure(lock=apply_lock(event.stripe_object)), event_id=event.pk)
    _wake_workers(job_id=job_id, queue=apply_event.queue)


def _wake_workers(*, job_id: int, queue: str) -> None:
    """
    Once the caller's transaction has committed (at once outside one), tell the
    listening workers a job is waiting, as procrastinate's insert trigger does
    for its other jobs (migration 0003 says why not in the transaction). A
    notification that cannot be sent is no loss: the workers poll for jobs too.
    """
    payload = json.dumps({"type": "job_inserted", "job_id": job_id})

    def notify() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_notify(%s, %s), pg_notify('procrastinate_any_queue_v1', %s)",
                    [f"procrastinate_queue_v1#{queue}", payload, payload],
                )
        except DatabaseError as exc:
            logger.warning("Could not wake the workers for job %s: %s", job_id, storable_error(exc))

    transaction.on_commit(notify)


@dataclass
class _Attempt:
    event: WebhookEvent | None
    # The PaymentIntent the handler needs and no payment here records yet.
    unknown_intent: str | None = None


def webhook_event_apply(*, event_id: int, final_attempt: bool = True) -> WebhookEvent | None:
    """
    Apply a stored event: run its type's handler once (`processed`; `ignored`
    for a type without handler or the handler's EventIgnored) and answer the
    event as stored afterwards; None when no event has `event_id`. An event that
    is no longer `pending` is answered unchanged: applying twice (a job run
    again after its worker died, a reprocess racing a job) applies once.

    An event about a PaymentIntent no payment records yet (the handler's
    PaymentNotKnownYet: a refund or dispute delivered before, or without, the
    PaymentIntent's own events) has that PaymentIntent read from Stripe with no
    lock held, adopted (`payment_record_stripe_intent`, no user, as news of the
    moment Stripe answered, on Stripe's clock), and the handler runs again; if Stripe has no such
    PaymentIntent in this account the event is `ignored` with that reason.

    A failed attempt (any other exception of the handler, or Stripe not
    answering that read) keeps nothing the handler did, counts in `attempts`
    and keeps its error in `error` (the exception's class and first line: no
    row data, no secret). Then with `final_attempt` the event is `failed`;
    otherwise ApplyFailed is raised, for the job to be retried later.

    Locks: the event row, then what the handler locks (the payment row, then
    its refunds), one transaction per attempt; none during the Stripe read.
    """
    attempt = _apply_once(event_id)
    if attempt.unknown_intent:
        problem = _adopt_intent(attempt.unknown_intent)
        if problem is _MISSING_AT_STRIPE:
            return _finish(
                event_id,
                WebhookEvent.Outcome.IGNORED,
                f"Stripe has no PaymentIntent {attempt.unknown_intent} in this account: not a payment of this site.",
            )
        if problem:
            attempt = _Attempt(_record_error(event_id, problem))
        else:
            attempt = _apply_once(event_id, count=False)
            if attempt.unknown_intent:
                # Adopted, yet the handler still finds no payment: a failure like any other.
                attempt = _Attempt(_record_error(event_id, f"PaymentNotKnownYet: {attempt.event.error}"))
    event = attempt.event
    if event is None or event.outcome != WebhookEvent.Outcome.PENDING:
        return event
    if final_attempt:
        return _finish(event_id, WebhookEvent.Outcome.FAILED, event.error)
    raise ApplyFailed(event.error)


def _apply_once(event_id: int, *, count: bool = True) -> _Attempt:
    """One run of the handler of a pending event, under the event's row lock; a failure is kept on the event."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.outcome != WebhookEvent.Outcome.PENDING:
            return _Attempt(event)
        if count:
            event.attempts += 1
        handler = HANDLERS.get(event.type)
        unknown_intent = None
        if handler is None:
            event.outcome = WebhookEvent.Outcome.IGNORED
            event.error = ""
        else:
            try:
                # A savepoint of its own: a failing handler leaves nothing half-applied,
                # while the event itself is still saved with the failure.
                with transaction.atomic():
                    payment = handler(event)
            except EventIgnored as exc:
                event.outcome = WebhookEvent.Outcome.IGNORED
                event.error = str(exc)
            except PaymentNotKnownYet as exc:
                event.error = str(exc)
                unknown_intent = exc.intent_id
            except Exception as exc:
                event.error = storable_error(exc)
                # A database error's text quotes the row (DETAIL): its kind and constraint only, no traceback.
                logger.warning(
                    "Webhook %s (%s) attempt %s failed: %s",
                    event.stripe_event_id,
                    event.type,
                    event.attempts,
                    event.error,
                    exc_info=database_error_in(exc) is None,
                )
            else:
                event.outcome = WebhookEvent.Outcome.PROCESSED
                event.error = ""
                if payment is not None:
                    event.payment = payment
        if event.outcome != WebhookEvent.Outcome.PENDING:
            event.processed_at = timezone.now()
        event.save()
        if event.outcome != WebhookEvent.Outcome.PENDING:
            # The books hear of it here (they may not import this app); receivers only queue work after the commit.
            stripe_event_applied.send_robust(
                sender=WebhookEvent,
                event_type=event.type,
                stripe_object=event.stripe_object,
                outcome=event.outcome,
                stripe_event_id=event.stripe_event_id,
            )
        return _Attempt(event, unknown_intent)


# `_adopt_intent`'s answer when Stripe says the PaymentIntent does not exist.
_MISSING_AT_STRIPE = "missing at Stripe"


def _adopt_intent(intent_id: str) -> str | None:
    """
    Read the PaymentIntent from Stripe (no lock held) and record it, adopting it
    if no payment has it (`payment_record_stripe_intent`, as news of the moment
    Stripe answered, by the `Date` of its answer). Answers None when recorded, _MISSING_AT_STRIPE when Stripe does not
    have it, or the problem (Stripe failed, or its status is unknown) as storable text.
    """
    try:
        intent = stripe_gateway.payment_intent_retrieve(intent_id)
    except stripe_gateway.StripeRefused as exc:
        if exc.code == "resource_missing" or exc.http_status == 404:
            return _MISSING_AT_STRIPE
        return scrub(f"{type(exc).__name__}: reading PaymentIntent {intent_id}: {exc.message}")[:MAX_ERROR_LENGTH]
    except stripe_gateway.StripeError as exc:
        return scrub(f"{type(exc).__name__}: reading PaymentIntent {intent_id}: {exc.message}")[:MAX_ERROR_LENGTH]
    try:
        # As news of the moment Stripe answered, on Stripe's clock (never ours).
        payment_record_stripe_intent(intent=intent, at=stripe_gateway.answered_at(intent))
    except Exception as exc:
        return storable_error(exc)
    return None


def _record_error(event_id: int, error: str) -> WebhookEvent | None:
    """Keep `error` on a still-pending event (an attempt failed outside its handler)."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is not None and event.outcome == WebhookEvent.Outcome.PENDING:
            event.error = error
            event.save(update_fields=["error"])
        return event


def _finish(event_id: int, outcome: str, error: str) -> WebhookEvent | None:
    """Give a still-pending event its final `outcome` and `error`; an event no longer pending is left alone."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is not None and event.outcome == WebhookEvent.Outcome.PENDING:
            event.outcome = outcome
            event.error = error
            event.processed_at = timezone.now()
            event.save(update_fields=["outcome", "error", "processed_at"])
        return event


def storable_error(exc: BaseException) -> str:
    """
    What may be kept of an exception on an event (and shown in the admin, and
    logged): core.errors.safe_error_text, one line; a database error by its
    kind and constraint only, since PostgreSQL quotes the offending row (a
    payment's client secret included); no Stripe secret either.
    """
    return safe_error_text(exc, limit=MAX_ERROR_LENGTH)


def webhook_event_reprocess(*, event: WebhookEvent) -> WebhookEvent:
    """
    Give a failed event back to the workers (the admin's action, `process_webhooks
    --failed --queue`): it is `pending` again and its apply job is queued, in one
    transaction; answers the event as stored. An event that is not failed is
    left alone and nothing is queued. Locks the event row. No network call.
    Safe to repeat: a second call finds it pending; two jobs would apply it once.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if event.outcome == WebhookEvent.Outcome.FAILED:
            event.outcome = WebhookEvent.Outcome.PENDING
            event.processed_at = None
            event.save(update_fields=["outcome", "processed_at"])
            _queue_apply(event)
    return event


def webhook_event_reprocess_now(*, event: WebhookEvent) -> WebhookEvent:
    """
    Apply a failed event here and now (`process_webhooks --failed`): `pending`
    again, then one attempt (`webhook_event_apply`, final: failed again if it
    fails). Answers the event as stored afterwards; one that is not failed is
    answered unchanged. Locks and calls as `webhook_event_apply`. Safe to repeat.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if event.outcome != WebhookEvent.Outcome.FAILED:
            return event
        event.outcome = WebhookEvent.Outcome.PENDING
        event.save(update_fields=["outcome"])
    return webhook_event_apply(event_id=event.pk, final_attempt=True)
