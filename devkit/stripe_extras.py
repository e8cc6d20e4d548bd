"""
The local Stripe's layer for what real Stripe has and localstripe 1.15 lacks, so the
app can always send what real Stripe expects and read what real Stripe answers.

localstripe refuses (400 "Unexpected ...") some parameters real Stripe takes. This
layer takes them out of the request body before localstripe reads it, remembers them
per object id, and puts them back into every JSON answer about that object (create,
retrieve, update, confirm, cancel, capture, lists, events):

- PaymentIntents, on create (``POST /v1/payment_intents``) and update
  (``POST /v1/payment_intents/{id}``): ``description``, ``receipt_email``,
  ``statement_descriptor``, ``statement_descriptor_suffix``, ``shipping[...]``.
- Refunds, on create (``POST /v1/refunds``): ``reason`` (one of Stripe's three
  values, or 400 as at Stripe) and ``instructions_email``.

An empty value unsets the field, as at Stripe. Every PaymentIntent answer also gets
the fields localstripe leaves out: ``amount_received`` (the amount captured) and
``amount_capturable`` (what an authorized, uncaptured charge holds), and every
PaymentIntent and refund gets Stripe's ``null`` for a field above never set. Every
charge gets ``amount_captured``, Stripe's ``refunded`` (all that was captured is
refunded) and ``payment_method_details.card`` (brand, last 4, expiry, and for a
manual capture ``capture_before``, 7 days after the authorization). The webhooks
localstripe sends are filled the same way (``fill_events``).

A capture of a PaymentIntent that is not ``requires_capture`` (voided, already
captured) is refused as at Stripe (400 ``payment_intent_unexpected_state``):
localstripe captures a voided one. A partial capture: localstripe captures the
whole charge and refunds the rest, and lists that refund. Stripe (API 2025-03-31 and later) releases the uncaptured rest
without any refund: so the layer removes that refund from localstripe's store, with
its balance transaction, and sets the charge's balance transaction to the amount
captured. Refund lists, the charge's ``amount_refunded`` and the balance history
then read as at Stripe.

Memory only: ``DELETE /_config/data`` forgets everything. The layer sits inside
localstripe's own middlewares (after its authentication, inside its error handling)
and so inside the idempotency layer too, whose fingerprint sees the parameters as
they were sent.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from devkit.stripe_http import json_response, stripe_error

if TYPE_CHECKING:
    from aiohttp import web

    from devkit.stripe_http import Handler, Middleware

PAYMENT_INTENT_FIELDS = (
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "shipping",
)
REFUND_FIELDS = ("reason", "instructions_email")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")

PAYMENT_INTENT_CREATE = re.compile(r"^/v1/payment_intents$")
PAYMENT_INTENT_UPDATE = re.compile(r"^/v1/payment_intents/(?P<id>pi_\w+)$")
PAYMENT_INTENT_CAPTURE = re.compile(r"^/v1/payment_intents/(?P<id>pi_\w+)/capture$")
REFUND_CREATE = re.compile(r"^/v1/refunds$")
# How long a card authorization may wait for its capture at Stripe (most cards).
AUTHORIZATION_DAYS = 7


# --- What the layer remembers (plain Python, no aiohttp) ---------------------------


@dataclass
class Extras:
    """The parameters localstripe never saw, and the amounts captured, by Stripe object id."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    # PaymentIntent id -> the amount its capture call took (localstripe's charge
    # records a partial capture as a full capture plus a refund of the rest).
    captured: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        self.fields.clear()
        self.captured.clear()

    def remember(self, object_id: str, taken: dict[str, Any]) -> None:
        self.fields.setdefault(object_id, {}).update(taken)

    def fill(self, answer: Any) -> Any:
        """Fill every PaymentIntent and refund anywhere in an answer (object, list, event); answers it."""
        if isinstance(answer, list):
            for item in answer:
                self.fill(item)
        elif isinstance(answer, dict):
            for value in answer.values():
                self.fill(value)
            kind = answer.get("object")
            if kind == "payment_intent":
                self._fill_payment_intent(answer)
            elif kind == "refund":
                self._fill_object(answer, ("reason",))
            elif kind == "charge":
                self._fill_charge(answer)
        return answer

    def _fill_charge(self, charge: dict[str, Any]) -> None:
        intent_id = charge.get("payment_intent")
        if isinstance(intent_id, dict):
            intent_id = intent_id.get("id")
        if "amount_captured" not in charge:
            captured = charge.get("captured") and charge.get("status") == "succeeded"
            charge["amount_captured"] = self.captured.get(intent_id, charge.get("amount", 0)) if captured else 0
        # Stripe's `refunded`: all that was captured has been refunded (localstripe compares with the amount).
        refunded_amount = charge.get("amount_refunded") or 0
        charge["refunded"] = bool(charge["amount_captured"]) and refunded_amount >= charge["amount_captured"]
        if "payment_method_details" not in charge:
            charge["payment_method_details"] = _payment_method_details(charge, intent_id)

    def _fill_object(self, obj: dict[str, Any], always: tuple[str, ...]) -> None:
        for name in always:
            obj.setdefault(name, None)
        obj.update(self.fields.get(obj.get("id"), {}))

    def _fill_payment_intent(self, intent: dict[str, Any]) -> None:
        self._fill_object(intent, PAYMENT_INTENT_FIELDS)
        if "amount_received" not in intent:
            intent["amount_received"] = self._amount_received(intent)
        if "amount_capturable" not in intent:
            intent["amount_capturable"] = intent.get("amount", 0) if intent.get("status") == "requires_capture" else 0

    def _amount_received(self, intent: dict[str, Any]) -> int:
        if intent.get("id") in self.captured:
            return self.captured[intent["id"]]
        charge = intent.get("latest_charge")
        if isinstance(charge, dict):
            if charge.get("amount_captured") is not None:
                return charge["amount_captured"]
            return charge.get("amount", 0) if charge.get("captured") and charge.get("status") == "succeeded" else 0
        # No embedded charge to read: only a succeeded intent has received anything.
        return intent.get("amount", 0) if intent.get("status") == "succeeded" else 0


def _payment_method_details(charge: dict[str, Any], intent_id: str | None) -> dict[str, Any] | None:
    """Stripe's `payment_method_details` of a card charge, from localstripe's PaymentMethod and PaymentIntent."""
    try:
        from localstripe.resources import store
    except ImportError:  # the layer's logic without localstripe (unit tests)
        return None
    method = store.get(f"payment_method:{charge.get('payment_method')}")
    card = getattr(method, "card", None)
    if not isinstance(card, dict):
        return None
    details = {
        "brand": card.get("brand"),
        "last4": card.get("last4"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "funding": card.get("funding"),
        "country": card.get("country"),
        "fingerprint": card.get("fingerprint"),
        "capture_before": None,
    }
    intent = store.get(f"payment_intent:{intent_id}") if intent_id else None
    if getattr(intent, "capture_method", None) == "manual" and charge.get("created"):
        # Stripe's usual window for an online card authorization.
        details["capture_before"] = int(charge["created"]) + AUTHORIZATION_DAYS * 86400
    return {"type": "card", "card": details}


class TakenParams(NamedTuple):
    body: bytes
    taken: dict[str, Any]
    # Whether nothing but the taken parameters was sent.
    nothing_left: bool


def take_params(body: bytes, content_type: str, names: tuple[str, ...]) -> TakenParams:
    """Split a form (or JSON) body into the body without `names`, and the values of `names`."""
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return TakenParams(body, {}, False)
        if not isinstance(data, dict):
            return TakenParams(body, {}, False)
        taken = {name: _empty_unsets(data.pop(name)) for name in names if name in data}
        return TakenParams(json.dumps(data).encode() if taken else body, taken, not data)
    kept: list[tuple[str, str]] = []
    taken = {}
    for key, value in urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        path = _key_path(key)
        if path[0] in names:
            _set_path(taken, path, value)
        else:
            kept.append((key, value))
    if not taken:
        return TakenParams(body, {}, not kept)
    taken = {name: _empty_unsets(value) for name, value in taken.items()}
    return TakenParams(urllib.parse.urlencode(kept).encode(), taken, not kept)


def _key_path(key: str) -> list[str]:
    """`shipping[address][line1]` -> ['shipping', 'address', 'line1'] (Stripe's form nesting)."""
    head, bracket, rest = key.partition("[")
    return [head, *rest.rstrip("]").split("][")] if bracket else [head]


def _set_path(tree: dict[str, Any], path: list[str], value: str) -> None:
    node = tree
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _empty_unsets(value: Any) -> Any:
    # At Stripe an empty string sets a field back to null.
    if value == "":
        return None
    if isinstance(value, dict):
        return {name: _empty_unsets(inner) for name, inner in value.items()}
    return value


def _form_value(body: bytes, content_type: str, name: str) -> Any:
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return data.get(name) if isinstance(data, dict) else None
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"))).get(name)


def _refusal(taken: dict[str, Any]) -> dict[str, str] | None:
    """Stripe's error for a taken value it would refuse (None when all is well)."""
    reason = taken.get("reason")
    if reason is not None and reason not in REFUND_REASONS:
        return {
            "type": "invalid_request_error",
            "param": "reason",
            "message": f"Invalid reason: must be one of {', '.join(REFUND_REASONS[:-1])}, or {REFUND_REASONS[-1]}",
        }
    return None


# --- The middleware and the webhooks' filling ------------------------------------------


def make_extras_middleware(extras: Extras) -> Middleware:
    """Takes what localstripe refuses out of the request, and fills its answers (see the module's doc)."""

    async def extras_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "DELETE" and request.path == "/_config/data":
            response = await handler(request)
            extras.clear()
            return response
        if not request.path.startswith("/v1/"):
            return await handler(request)

        update = PAYMENT_INTENT_UPDATE.match(request.path) if request.method == "POST" else None
        capture = PAYMENT_INTENT_CAPTURE.match(request.path) if request.method == "POST" else None
        names = _names_taken(request, update is not None)
        taken = TakenParams(b"", {}, False)
        if names:
            taken = take_params(await request.read(), request.content_type, names)
        if taken.taken:
            refusal = _refusal(taken.taken)
            if refusal is not None:
                return stripe_error(400, refusal)
            _replace_body(request, taken.body)

        if update is not None and taken.taken and taken.nothing_left:
            # localstripe refuses an update with no parameters; at Stripe it is fine.
            answer = _payment_intent_export(update["id"])
        else:
            refunds_before = set()
            if capture is not None:
                refusal = _capture_refusal(capture["id"])
                if refusal is not None:
                    return stripe_error(400, refusal)
                refunds_before = _charge_refund_ids(capture["id"])
            response = await handler(request)
            answer = _json_answer(response)
            if answer is None or not 200 <= response.status < 300:
                return response
        if taken.taken and isinstance(answer, dict) and answer.get("id"):
            extras.remember(answer["id"], taken.taken)
        if capture is not None and isinstance(answer, dict):
            amount = _form_value(await request.read(), request.content_type, "amount_to_capture")
            captured = int(amount) if amount else answer.get("amount", 0)
            extras.captured[capture["id"]] = captured
            if _release_without_refund(capture["id"], refunds_before, captured):
                answer = _payment_intent_export(capture["id"])
        return json_response(200, extras.fill(answer))

    return extras_middleware


def _names_taken(request: web.Request, update: bool) -> tuple[str, ...]:
    if request.method != "POST":
        return ()
    if update or PAYMENT_INTENT_CREATE.match(request.path):
        return PAYMENT_INTENT_FIELDS
    if REFUND_CREATE.match(request.path):
        return REFUND_FIELDS
    return ()


def _replace_body(request: web.Request, body: bytes) -> None:
    # aiohttp reads a body once and caches it (`read()`), and localstripe's
    # authentication has already parsed it as a form (`post()`): replace the one
    # cache and drop the other, so localstripe's handler reads the new body. A
    # request cannot be cloned with another body once it has been read.
    request._read_bytes = body
    request._post = None


def _capture_refusal(payment_intent_id: str) -> dict[str, str] | None:
    """Stripe's error for capturing a PaymentIntent not `requires_capture` (localstripe captures a voided one)."""
    from localstripe.resources import store

    intent = store.get(f"payment_intent:{payment_intent_id}")
    if intent is None or intent.status == "requires_capture":
        return None
    return {
        "type": "invalid_request_error",
        "code": "payment_intent_unexpected_state",
        "message": f"This PaymentIntent could not be captured because it has a status of {intent.status}.",
    }


def _charge_refund_ids(payment_intent_id: str) -> set[str]:
    """The ids of the refunds localstripe holds for the PaymentIntent's charge (none when it has no charge)."""
    from localstripe.resources import store

    intent = store.get(f"payment_intent:{payment_intent_id}")
    charge = getattr(intent, "latest_charge", None)
    if charge is None:
        return set()
    return {key.split(":", 1)[1] for key, obj in store.items() if key.startswith("refund:") and obj.charge == charge.id}


def _release_without_refund(payment_intent_id: str, refunds_before: set[str], captured: int) -> bool:
    """
    After a capture of `captured`: remove the refund localstripe made of the
    uncaptured rest (and its balance transaction), and make the charge's balance
    transaction the amount captured, as Stripe does. Answers whether anything changed.
    """
    from localstripe.resources import store

    released = _charge_refund_ids(payment_intent_id) - refunds_before
    for refund_id in released:
        refund = store.pop(f"refund:{refund_id}")
        store.pop(f"balance_transaction:{refund.balance_transaction}", None)
    charge = store[f"payment_intent:{payment_intent_id}"].latest_charge
    transaction = store.get(f"balance_transaction:{charge.balance_transaction}")
    if transaction is not None and transaction.amount != captured:
        from devkit.stripe_ledger import set_charge_fee

        transaction.amount = captured
        # Stripe's fee is on what was captured.
        set_charge_fee(transaction)
    return bool(released)


def _payment_intent_export(payment_intent_id: str) -> dict[str, Any]:
    """The PaymentIntent as localstripe would answer it (its UserError, e.g. 404, reaches its error layer)."""
    from localstripe.resources import PaymentIntent

    return PaymentIntent._api_retrieve(payment_intent_id)._export()


def _json_answer(response: web.StreamResponse) -> Any:
    from aiohttp import web

    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def fill_events(extras: Extras) -> None:
    """Make localstripe's events (its webhooks and `GET /v1/events`) carry the layer's fields too."""
    from localstripe.resources import Event

    export = Event._export

    def export_filled(self: Event, expand: list[str] | None = None) -> dict[str, Any]:
        # A copy: the event keeps its snapshot of the object, unfilled.
        return extras.fill(copy.deepcopy(export(self, expand=expand)))

    Event._export = export_filled
