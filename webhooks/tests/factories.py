"""
Stripe events built the way Stripe documents them, and signed for real.

Every object starts from Stripe's own example at the current API version
(stripe_objects.json, from stripe/openapi's fixtures, MIT licence) with the
fields a test cares about replaced. Reusable by any test or load test:
`post_event(client, payment_intent_event("payment_intent.succeeded", ...))`.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from functools import cache
from pathlib import Path

import stripe
from django.conf import settings

from core.idempotency import PAYMENT_ID_METADATA_KEY

OBJECTS_FILE = Path(__file__).with_name("stripe_objects.json")
CURRENT_API_VERSION = "2025-10-29.clover"
# localstripe's events say this; its PaymentIntent statuses use that version's names.
LOCALSTRIPE_API_VERSION = "2017-08-15"
# A version before 2025-03-31 (basil): voids, expiries and partial captures come with a Refund object.
OLD_API_VERSION = "2024-06-20"

_ids = itertools.count(1)


@cache
def _examples() -> dict:
    return json.loads(OBJECTS_FILE.read_text())


def example(name: str) -> dict:
    """A fresh copy of Stripe's example object `name` (payment_intent, charge, refund, dispute, event)."""
    return copy.deepcopy(_examples()[name])


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):010d}"


def payment_intent_object(
    *,
    intent_id: str | None = None,
    status: str = "requires_payment_method",
    amount: int | None = None,
    currency: str = "usd",
    payment=None,
    metadata: dict | None = None,
    last_payment_error: dict | None = None,
    latest_charge=None,
    created: int | None = None,
    capture_method: str = "automatic",
    amount_received: int | None = None,
    cancellation_reason: str | None = None,
) -> dict:
    """
    A PaymentIntent; with `payment`, one our app made (its id and metadata; its
    amount unless `amount` is given). `amount_received` defaults to all of it once
    succeeded; `amount_capturable` is all of it while requires_capture.
    """
    intent = example("payment_intent")
    if payment is not None:
        intent_id = intent_id or payment.stripe_payment_intent_id
        amount, currency = amount or payment.amount, payment.currency
        metadata = {**(metadata or {}), PAYMENT_ID_METADATA_KEY: str(payment.id)}
    amount = amount or 2000
    if amount_received is None:
        amount_received = amount if status == "succeeded" else 0
    intent.update(
        id=intent_id or new_id("pi"),
        status=status,
        amount=amount,
        amount_received=amount_received,
        amount_capturable=amount if status == "requires_capture" else 0,
        capture_method=capture_method,
        currency=currency,
        metadata=metadata or {},
        last_payment_error=last_payment_error,
        latest_charge=latest_charge,
        canceled_at=(created or int(time.time())) if status == "canceled" else None,
        cancellation_reason=cancellation_reason,
        created=created or int(time.time()),
        next_action={"type": "use_stripe_sdk"} if status == "requires_action" else None,
        processing=None,
    )
    intent["client_secret"] = f"{intent['id']}_secret_test"
    return intent


def card_declined_error() -> dict:
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    }


def charge_object(
    *,
    intent_id: str,
    amount: int = 2000,
    amount_refunded: int = 0,
    refunds=None,
    charge_id: str | None = None,
    captured: bool = True,
    amount_captured: int | None = None,
    refunded: bool | None = None,
    capture_before: int | None = None,
    last4: str = "4242",
    created: int | None = None,
) -> dict:
    """
    A charge of `intent_id`: captured (all of it unless `amount_captured`), or with
    `captured=False` an authorization only (`capture_before` says until when). A
    current charge embeds no refunds; pass `refunds` for an old API's shape.
    """
    charge = example("charge")
    if amount_captured is None:
        amount_captured = amount if captured else 0
    charge.update(
        id=charge_id or new_id("ch"),
        payment_intent=intent_id,
        amount=amount,
        amount_captured=amount_captured,
        amount_refunded=amount_refunded,
        captured=captured,
        paid=True,
        refunded=(amount_refunded >= amount_captured > 0) if refunded is None else refunded,
        status="succeeded",
        created=created or int(time.time()),
    )
    card = charge["payment_method_details"]["card"]
    card.update(last4=last4, brand="visa", capture_before=capture_before)
    charge.pop("refunds", None)
    if refunds is not None:
        charge["refunds"] = {"object": "list", "data": refunds, "has_more": False, "url": "/v1/refunds"}
    return charge


def refund_object(
    *,
    intent_id: str | None,
    refund_id: str | None = None,
    amount: int = 500,
    status: str = "succeeded",
    metadata: dict | None = None,
    failure_reason: str | None = None,
    created: int | None = None,
    reason: str | None = None,
    charge_id: str | None = None,
) -> dict:
    refund = example("refund")
    refund.update(
        id=refund_id or new_id("re"),
        payment_intent=intent_id,
        charge=charge_id or new_id("ch"),
        amount=amount,
        status=status,
        metadata=metadata or {},
        created=created or int(time.time()),
        reason=reason,
    )
    if failure_reason:
        refund["failure_reason"] = failure_reason
    return refund


def dispute_object(
    *, intent_id: str | None, dispute_id: str | None = None, amount: int = 2000, status: str = "needs_response"
) -> dict:
    dispute = example("dispute")
    dispute.update(
        id=dispute_id or new_id("dp"), payment_intent=intent_id, amount=amount, status=status, reason="fraudulent"
    )
    return dispute


def stripe_event(
    event_type: str,
    obj: dict,
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str = CURRENT_API_VERSION,
    previous_attributes: dict | None = None,
) -> dict:
    """An event around `obj`, shaped like Stripe's example event."""
    event = example("event")
    event.update(
        id=event_id or new_id("evt"),
        type=event_type,
        created=created or int(time.time()),
        api_version=api_version,
        data={"object": obj},
        pending_webhooks=1,
        request={"id": new_id("req"), "idempotency_key": None},
    )
    if previous_attributes is not None:
        event["data"]["previous_attributes"] = previous_attributes
    return event


def payment_intent_event(
    event_type: str, payment=None, *, created: int | None = None, api_version: str = CURRENT_API_VERSION, **intent
) -> dict:
    """`payment_intent.<x>` for `payment` (or a PaymentIntent the app never made), in the status the type implies."""
    status = intent.pop("status", None) or INTENT_STATUS_OF[event_type]
    if event_type == "payment_intent.payment_failed":
        intent.setdefault("last_payment_error", card_declined_error())
    return stripe_event(
        event_type,
        payment_intent_object(payment=payment, status=status, created=created, **intent),
        created=created,
        api_version=api_version,
    )


INTENT_STATUS_OF = {
    "payment_intent.created": "requires_payment_method",
    "payment_intent.processing": "processing",
    "payment_intent.requires_action": "requires_action",
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "requires_payment_method",
    "payment_intent.canceled": "canceled",
    "payment_intent.amount_capturable_updated": "requires_capture",
}


def sign(body: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send with `body`."""
    # During a rotation STRIPE_WEBHOOK_SECRET holds several: Stripe signs with each; one is enough here.
    secret = secret or settings.STRIPE_WEBHOOK_SECRET.split(",")[0]
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp or int(time.time()))


def post_event(
    client,
    event: dict | str,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature=None,
    apply: bool = True,
):
    """
    POST the event to /webhooks/stripe/ as Stripe does (raw JSON body, signed);
    then, with `apply`, run the apply jobs it queued here, in the test's own
    transaction, as a worker would (devkit.workers.run_jobs_in_process). Answers
    the endpoint's response.
    """
    body = event if isinstance(event, str) else json.dumps(event)
    headers = {}
    signature = signature if signature is not None else sign(body, secret=secret, timestamp=timestamp)
    if signature:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    response = client.post("/webhooks/stripe/", data=body, content_type="application/json", **headers)
    if apply and response.status_code == 200:
        from devkit.workers import run_jobs_in_process

        run_jobs_in_process()
    return response


def wait_until_applied(event_ids=None, *, timeout: float = 30.0) -> bool:
    """
    Wait until no stored event (or none of `event_ids`, Stripe ids) is `pending`
    any more: a real worker applies them in its own time. Answers whether that
    happened before `timeout` seconds; the caller asserts on what it finds.
    """
    from webhooks.models import WebhookEvent

    pending = WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.PENDING)
    if event_ids is not None:
        pending = pending.filter(stripe_event_id__in=list(event_ids))
    deadline = time.monotonic() + timeout
    while pending.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def receive_and_apply(event: dict):
    """
    What Stripe's delivery and then a worker's last attempt do to `event` (a dict as
    Stripe sends it): stored, then applied at once, a failure left `failed` (not
    retried later). Answers the WebhookEvent as stored afterwards; a duplicate is
    answered as it was stored, unchanged.
    """
    from webhooks.models import WebhookEvent
    from webhooks.services import webhook_event_apply, webhook_event_receive

    event_id = webhook_event_receive(event=event)
    if event_id is None:
        return WebhookEvent.objects.get(stripe_event_id=event["id"])
    return webhook_event_apply(event_id=event_id, final_attempt=True)
