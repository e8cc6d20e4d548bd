"""
The local Stripe's money layer: fees, balance transactions listed as Stripe lists
them, disputes and payouts (development and tests only).

localstripe 1.15 records a balance transaction for each charge and refund, but
with no fee, refuses every list filter, has no Dispute resource, and makes only
manual euro payouts whose balance transaction does not exist. Real Stripe is the
reference; this layer gives the app what it reads there:

- **Fees.** Each charge's balance transaction carries Stripe's processing fee
  (``fee``, ``fee_details`` of type ``stripe_fee``, ``net = amount - fee``): 2.9 % +
  30 cents in usd, and the published domestic card price of a few other currencies
  (``CARD_FEES``); a refund's transaction has no fee (Stripe keeps the charge's fee).
- **Balance transactions.** ``GET /v1/balance_transactions`` newest first, paged by
  ``limit`` (at most 100), ``starting_after`` and ``ending_before``, filtered by
  ``payout``, ``source``, ``type``, ``currency`` and ``created`` (``gt``, ``gte``,
  ``lt``, ``lte`` or an exact time); ``GET /v1/balance_transactions/{id}``.
- **Disputes.** ``GET /v1/disputes/{id}`` and ``GET /v1/disputes``. A dispute is
  opened and closed through the control endpoints below; opening withdraws the
  disputed amount and Stripe's dispute fee (a transaction of type ``adjustment``,
  category ``dispute``), winning gives the amount back (category
  ``dispute_reversal``; the fee is not returned, as for most US cards). Webhooks:
  ``charge.dispute.created``, ``charge.dispute.funds_withdrawn``,
  ``charge.dispute.funds_reinstated``, ``charge.dispute.closed``.
- **Payouts.** ``POST /v1/payouts`` (a manual payout of the available balance,
  any currency), ``GET /v1/payouts/{id}``, ``GET /v1/payouts``; each payout has its
  own balance transaction (type ``payout``, negative). Stripe's *automatic*
  payouts, the only ones it reconciles (``GET /v1/balance_transactions?payout=``
  lists every transaction the payout paid out, and the payout's own), are made
  here on demand by a control endpoint, not by a schedule. Webhooks:
  ``payout.created``, ``payout.paid``, ``payout.reconciliation_completed``,
  ``payout.failed``.
- ``GET /v1/balance``: per currency, what the transactions hold not yet paid out.

Control endpoints (not Stripe's API; JSON bodies; no authentication, as localstripe's
own ``/_config``):

- ``POST /_ledger/disputes`` ``{"payment_intent" or "charge", "amount"?, "reason"?}``
- ``POST /_ledger/disputes/{id}/close`` ``{"outcome": "won" | "lost"}``
- ``POST /_ledger/payouts`` ``{"currency"}``: an automatic payout of every
  transaction of that currency not paid out yet (``in_transit``)
- ``POST /_ledger/payouts/{id}/pay`` and ``/fail``
- ``POST /_ledger/seed`` ``{"count", "currency", "start"?}``: that many charge
  transactions at once, a second apart from ``start`` (benchmarks).

Memory only: ``DELETE /_config/data`` forgets everything, as localstripe does.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from devkit.stripe_http import json_response, stripe_error

if TYPE_CHECKING:
    from aiohttp import web

    from devkit.stripe_http import Handler, Middleware

# (percent, fixed minor units) of a domestic card charge, from Stripe's published prices.
CARD_FEES: dict[str, tuple[Decimal, int]] = {
    "usd": (Decimal("2.9"), 30),
    "cad": (Decimal("2.9"), 30),
    "eur": (Decimal("1.5"), 25),
    "gbp": (Decimal("1.5"), 20),
    "aud": (Decimal("1.7"), 30),
    "jpy": (Decimal("3.6"), 0),
}
DEFAULT_CARD_FEE = (Decimal("2.9"), 30)
# Stripe's dispute fee per currency (minor units); kept when the dispute is won.
DISPUTE_FEES: dict[str, int] = {"usd": 1500, "cad": 1500, "eur": 2000, "gbp": 2000, "aud": 2500, "jpy": 2000}
DEFAULT_DISPUTE_FEE = 1500
# Payouts arrive at the bank this long after they are made (standard payouts).
ARRIVAL_SECONDS = 2 * 86400
MAX_LIMIT = 100

LIST_FILTERS = {"limit", "starting_after", "ending_before", "payout", "source", "type", "currency", "created"}


def card_fee(amount: int, currency: str) -> int:
    """Stripe's processing fee (minor units) of a card charge of `amount` in `currency`."""
    percent, fixed = CARD_FEES.get(currency.lower(), DEFAULT_CARD_FEE)
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)) + fixed


def fee_detail(amount: int, currency: str, description: str) -> dict[str, Any]:
    """One of a balance transaction's `fee_details`, as Stripe writes it (a `stripe_fee`)."""
    return {
        "amount": amount,
        "application": None,
        "currency": currency,
        "description": description,
        "type": "stripe_fee",
    }


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Ledger:
    """What the layer holds beside localstripe's store: the order of transactions, payouts, disputes."""

    # Transaction ids, oldest first (Stripe lists newest first).
    order: list[str] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, list[str]] = field(default_factory=dict)
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Payout id -> the transactions it pays out (its own last).
    payout_transactions: dict[str, list[str]] = field(default_factory=dict)
    paid_out: dict[str, str] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whether `order` is also in `created` order (a seed of older transactions breaks it).
    by_created: bool = True
    newest_created: int = 0

    def clear(self) -> None:
        """Forget everything (with localstripe's `DELETE /_config/data`)."""
        for part in (self.order, self.position, self.by_source, self.payouts):
            part.clear()
        self.payout_transactions.clear()
        self.paid_out.clear()
        self.disputes.clear()
        self.by_created = True
        self.newest_created = 0

    def added(self, transaction: Any) -> None:
        """Keep a new transaction's place: the newest last, and under its source."""
        self.position[transaction.id] = len(self.order)
        self.order.append(transaction.id)
        self.by_source.setdefault(transaction.source, []).append(transaction.id)
        if transaction.created < self.newest_created:
            self.by_created = False
        self.newest_created = max(self.newest_created, transaction.created)


LEDGER = Ledger()


# --- Balance transactions ---------------------------------------------------------


def install(ledger: Ledger = LEDGER) -> None:
    """Make every balance transaction localstripe records carry Stripe's fee, and known to `ledger`."""
    from localstripe.resources import BalanceTransaction

    if getattr(BalanceTransaction, "_ledger_installed", False):
        return
    original = BalanceTransaction.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.type == "charge":
            set_charge_fee(self)
        ledger.added(self)

    BalanceTransaction.__init__ = init
    BalanceTransaction._ledger_installed = True


def set_charge_fee(transaction: Any) -> None:
    """A charge's transaction: Stripe's card fee on its (captured) amount."""
    fee = card_fee(transaction.amount, transaction.currency)
    transaction.fee = fee
    transaction.fee_details = [fee_detail(fee, transaction.currency, "Stripe processing fees")]


def new_transaction(
    ledger: Ledger,
    *,
    amount: int,
    currency: str,
    type: str,
    reporting_category: str,
    source: str,
    description: str | None,
    fee: int = 0,
    fee_description: str = "",
    created: int | None = None,
) -> Any:
    """A balance transaction localstripe's own constructor refuses (disputes, payouts), in its store."""
    from localstripe.resources import BalanceTransaction, StripeObject

    transaction = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(transaction)
    if created is not None:
        transaction.created = created
    transaction.amount = amount
    transaction.available_on = transaction.created
    transaction.currency = currency
    transaction.description = description
    transaction.exchange_rate = None
    transaction.fee = fee
    transaction.fee_details = [fee_detail(fee, currency, fee_description)] if fee else []
    transaction.reporting_category = reporting_category
    transaction.source = source
    transaction.status = "available"
    transaction.type = type
    ledger.added(transaction)
    return transaction


def _transaction(transaction_id: str) -> Any:
    """localstripe's BalanceTransaction of that id, or None."""
    from localstripe.resources import store

    return store.get(f"balance_transaction:{transaction_id}")


def export_transaction(
    transaction: Any, ledger: Ledger | None = None, *, expand_source: bool = False
) -> dict[str, Any]:
    """The transaction as Stripe answers it; with `expand_source`, its `source` is the object (when known)."""
    answer = transaction._export()
    answer["net"] = transaction.amount - transaction.fee
    if expand_source and ledger is not None:
        answer["source"] = _source_object(ledger, transaction.source) or transaction.source
    return answer


def _source_object(ledger: Ledger, source_id: str) -> dict[str, Any] | None:
    from localstripe.resources import store

    if source_id in ledger.disputes:
        return copy.deepcopy(ledger.disputes[source_id])
    if source_id in ledger.payouts:
        return copy.deepcopy(ledger.payouts[source_id])
    kind = {"ch": "charge", "re": "refund", "py": "charge"}.get(source_id.split("_", 1)[0])
    obj = store.get(f"{kind}:{source_id}") if kind else None
    return obj._export() if obj is not None else None


def _expands(query: dict[str, str], path: str) -> bool:
    return any(key == "expand" or key.startswith("expand[") for key, value in query.items() if value == path)


class ListRefused(ValueError):
    """A list request Stripe would refuse (400)."""


def _created_filter(query: dict[str, str]) -> list[tuple[str, int]]:
    tests = []
    for key, value in query.items():
        match = re.fullmatch(r"created(?:\[(gt|gte|lt|lte)\])?", key)
        if not match:
            continue
        try:
            tests.append((match.group(1) or "eq", int(value)))
        except ValueError as exc:
            raise ListRefused(f"Invalid integer: {value}") from exc
    return tests


def _passes(created: int, tests: list[tuple[str, int]]) -> bool:
    for op, bound in tests:
        if (
            (op == "eq" and created != bound)
            or (op == "gt" and created <= bound)
            or (op == "gte" and created < bound)
            or (op == "lt" and created >= bound)
            or (op == "lte" and created > bound)
        ):
            return False
    return True


def _below(created: int, tests: list[tuple[str, int]]) -> bool:
    return any(
        (op == "gte" and created < bound) or (op == "gt" and created <= bound) or (op == "eq" and created < bound)
        for op, bound in tests
    )


def list_transactions(ledger: Ledger, query: dict[str, str]) -> dict[str, Any]:
    """Stripe's list of balance transactions for a query string's parameters (see the module's doc)."""
    unknown = {key.split("[", 1)[0] for key in query} - LIST_FILTERS - {"expand"}
    if unknown:
        raise ListRefused(f"Received unknown parameter: {sorted(unknown)[0]}")
    limit = _limit(query)
    if "payout" in query:
        candidates = ledger.payout_transactions.get(query["payout"])
        if candidates is None:
            raise ListRefused(f"No such payout: '{query['payout']}'")
    elif "source" in query:
        candidates = ledger.by_source.get(query["source"], [])
    else:
        candidates = ledger.order
    created_tests = _created_filter(query)
    # Positions in `candidates` (oldest first), walked newest first.
    index = {tid: i for i, tid in enumerate(candidates)} if candidates is not ledger.order else ledger.position
    if query.get("starting_after"):
        start = index.get(query["starting_after"])
        if start is None:
            raise ListRefused(f"No such balance transaction: '{query['starting_after']}'")
        positions = range(start - 1, -1, -1)
    elif query.get("ending_before"):
        end = index.get(query["ending_before"])
        if end is None:
            raise ListRefused(f"No such balance transaction: '{query['ending_before']}'")
        positions = range(end + 1, len(candidates))
    else:
        positions = range(len(candidates) - 1, -1, -1)
    newest_first = not query.get("ending_before")
    found = []
    for i in positions:
        transaction = _transaction(candidates[i])
        if transaction is None:
            continue
        if query.get("type") and transaction.type != query["type"]:
            continue
        if query.get("currency") and transaction.currency != query["currency"]:
            continue
        if not _passes(transaction.created, created_tests):
            # Kept oldest first: once below a lower bound, every older one is too.
            if (
                newest_first
                and candidates is ledger.order
                and ledger.by_created
                and _below(transaction.created, created_tests)
            ):
                break
            continue
        found.append(transaction)
        if len(found) > limit:
            break
    has_more = len(found) > limit
    found = found[:limit]
    if not newest_first:
        found.reverse()
    return {
        "object": "list",
        "data": [
            export_transaction(transaction, ledger, expand_source=_expands(query, "data.source"))
            for transaction in found
        ],
        "has_more": has_more,
        "url": "/v1/balance_transactions",
    }


def _limit(query: dict[str, str]) -> int:
    try:
        limit = int(query.get("limit", 10))
    except ValueError as exc:
        raise ListRefused("Invalid integer: limit") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise ListRefused("This value must be between 1 and 100: limit")
    return limit


def balance(ledger: Ledger) -> dict[str, Any]:
    """Stripe's Balance: per currency, the net of every transaction (payouts' own are negative)."""
    from localstripe.resources import store

    totals: dict[str, int] = {}
    for transaction_id in ledger.order:
        transaction = store.get(f"balance_transaction:{transaction_id}")
        if transaction is not None:
            totals[transaction.currency] = totals.get(transaction.currency, 0) + transaction.amount - transaction.fee
    return {
        "object": "balance",
        "livemode": False,
        "available": [
            {"amount": amount, "currency": currency, "source_types": {"card": amount}}
            for currency, amount in sorted(totals.items())
        ],
        "pending": [{"amount": 0, "currency": currency, "source_types": {"card": 0}} for currency in sorted(totals)],
    }


# --- Webhooks ----------------------------------------------------------------------


class _Snapshot:
    """What localstripe's Event needs of an object: its export."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = copy.deepcopy(obj)

    def _export(self, expand: list[str] | None = None) -> dict[str, Any]:
        return copy.deepcopy(self._obj)


def send_event(event_type: str, obj: dict[str, Any]) -> None:
    """A Stripe event about `obj`, kept in `GET /v1/events` and sent to the registered webhooks."""
    from localstripe.resources import Event
    from localstripe.webhooks import schedule_webhook

    schedule_webhook(Event(event_type, _Snapshot(obj)))


# --- Disputes ----------------------------------------------------------------------


def open_dispute(ledger: Ledger, spec: dict[str, Any]) -> dict[str, Any]:
    """A dispute of a charge (by `charge` or `payment_intent`), the amount and the fee withdrawn."""
    from localstripe.resources import store

    charge = None
    if spec.get("charge"):
        charge = store.get(f"charge:{spec['charge']}")
    elif spec.get("payment_intent"):
        intent = store.get(f"payment_intent:{spec['payment_intent']}")
        charge = getattr(intent, "latest_charge", None)
    if charge is None or getattr(charge, "status", None) != "succeeded":
        raise ListRefused("No such charge, or it is not paid")
    amount = int(spec.get("amount") or charge.amount)
    dispute_id = _id("dp")
    fee = DISPUTE_FEES.get(charge.currency, DEFAULT_DISPUTE_FEE)
    withdrawal = new_transaction(
        ledger,
        amount=-amount,
        currency=charge.currency,
        type="adjustment",
        reporting_category="dispute",
        source=dispute_id,
        description=f"Chargeback withdrawal for {charge.id}",
        fee=fee,
        fee_description="Dispute fee",
    )
    now = int(time.time())
    dispute = {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transaction": withdrawal.id,
        "balance_transactions": [export_transaction(withdrawal)],
        "charge": charge.id,
        "created": now,
        "currency": charge.currency,
        "evidence": {},
        "evidence_details": {
            "due_by": now + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": getattr(charge, "payment_intent", None),
        "reason": spec.get("reason") or "fraudulent",
        "status": "needs_response",
    }
    ledger.disputes[dispute_id] = dispute
    send_event("charge.dispute.created", dispute)
    send_event("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(ledger: Ledger, dispute_id: str, outcome: str) -> dict[str, Any]:
    """Close a dispute: `won` gives the amount back (not the fee), `lost` keeps it withdrawn."""
    dispute = ledger.disputes.get(dispute_id)
    if dispute is None:
        raise LookupError(dispute_id)
    if outcome not in ("won", "lost") or dispute["status"] in ("won", "lost"):
        raise ListRefused("A dispute is closed once, as won or lost")
    dispute["status"] = outcome
    if outcome == "won":
        reinstated = new_transaction(
            ledger,
            amount=dispute["amount"],
            currency=dispute["currency"],
            type="adjustment",
            reporting_category="dispute_reversal",
            source=dispute_id,
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        dispute["balance_transactions"].append(export_transaction(reinstated))
        send_event("charge.dispute.funds_reinstated", dispute)
    send_event("charge.dispute.closed", dispute)
    return dispute


# --- Payouts -----------------------------------------------------------------------


def _payout(ledger: Ledger, *, amount: int, currency: str, automatic: bool, description: str = "") -> dict[str, Any]:
    payout_id = _id("po")
    own = new_transaction(
        ledger,
        amount=-amount,
        currency=currency,
        type="payout",
        reporting_category="payout",
        source=payout_id,
        description=description or "STRIPE PAYOUT",
    )
    payout = {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "arrival_date": own.created + ARRIVAL_SECONDS,
        "automatic": automatic,
        "balance_transaction": own.id,
        "created": own.created,
        "currency": currency,
        "description": description or "STRIPE PAYOUT",
        "destination": "ba_localstripe",
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reconciliation_status": "in_progress" if automatic else "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": "pending",
        "type": "bank_account",
    }
    ledger.payouts[payout_id] = payout
    ledger.payout_transactions[payout_id] = [own.id]
    ledger.paid_out[own.id] = payout_id
    return payout


def not_paid_out(ledger: Ledger, currency: str) -> list[Any]:
    """The transactions of `currency` no payout has taken yet, oldest first."""
    from localstripe.resources import store

    found = []
    for transaction_id in ledger.order:
        if transaction_id in ledger.paid_out:
            continue
        transaction = store.get(f"balance_transaction:{transaction_id}")
        if transaction is not None and transaction.currency == currency and transaction.type != "payout":
            found.append(transaction)
    return found


def automatic_payout(ledger: Ledger, currency: str) -> dict[str, Any]:
    """Stripe's scheduled payout, made now: every transaction of `currency` not yet paid out."""
    taken = not_paid_out(ledger, currency)
    amount = sum(transaction.amount - transaction.fee for transaction in taken)
    if amount <= 0:
        raise ListRefused(f"Nothing to pay out in {currency}")
    payout = _payout(ledger, amount=amount, currency=currency, automatic=True)
    own = ledger.payout_transactions[payout["id"]]
    ledger.payout_transactions[payout["id"]] = [transaction.id for transaction in taken] + own
    for transaction in taken:
        ledger.paid_out[transaction.id] = payout["id"]
    payout["status"] = "in_transit"
    send_event("payout.created", payout)
    return payout


def manual_payout(ledger: Ledger, params: dict[str, str]) -> dict[str, Any]:
    """`POST /v1/payouts`: `amount` of `currency` from the available balance."""
    try:
        amount = int(params.get("amount", ""))
    except ValueError as exc:
        raise ListRefused("Invalid integer: amount") from exc
    currency = (params.get("currency") or "").lower()
    if amount <= 0 or not currency:
        raise ListRefused("amount and currency are required")
    available = sum(entry["amount"] for entry in balance(ledger)["available"] if entry["currency"] == currency)
    if amount > available:
        raise ListRefused("You have insufficient funds in your Stripe account for this transfer.")
    payout = _payout(
        ledger, amount=amount, currency=currency, automatic=False, description=params.get("description", "")
    )
    send_event("payout.created", payout)
    return payout


def settle_payout(ledger: Ledger, payout_id: str, *, paid: bool) -> dict[str, Any]:
    """The bank's answer: `paid` (then its reconciliation is complete) or failed (the money comes back)."""
    payout = ledger.payouts.get(payout_id)
    if payout is None:
        raise LookupError(payout_id)
    if payout["status"] not in ("pending", "in_transit"):
        raise ListRefused(f"The payout is already {payout['status']}")
    if paid:
        payout["status"] = "paid"
        send_event("payout.paid", payout)
        if payout["automatic"]:
            payout["reconciliation_status"] = "completed"
            send_event("payout.reconciliation_completed", payout)
        return payout
    payout["status"] = "failed"
    payout["failure_code"] = "account_closed"
    payout["failure_message"] = "The bank account has been closed."
    back = new_transaction(
        ledger,
        amount=payout["amount"],
        currency=payout["currency"],
        type="payout_failure",
        reporting_category="payout_reversal",
        source=payout_id,
        description="Payout failure",
    )
    payout["failure_balance_transaction"] = back.id
    for transaction_id in ledger.payout_transactions[payout_id]:
        ledger.paid_out.pop(transaction_id, None)
    send_event("payout.failed", payout)
    return payout


def seed(ledger: Ledger, spec: dict[str, Any]) -> dict[str, Any]:
    """`count` charge transactions of `currency`, a second apart from `start` (Unix time; default now - count)."""
    count = int(spec.get("count", 0))
    currency = str(spec.get("currency") or "usd")
    start = int(spec.get("start") or time.time() - count)
    amount = int(spec.get("amount") or 2000)
    fee = card_fee(amount, currency)
    for i in range(count):
        new_transaction(
            ledger,
            amount=amount,
            currency=currency,
            type="charge",
            reporting_category="charge",
            source=_id("ch"),
            description=None,
            fee=fee,
            fee_description="Stripe processing fees",
            created=start + i,
        )
    return {"seeded": count}


def _list_objects(objects: list[dict[str, Any]], query: dict[str, str], url: str) -> dict[str, Any]:
    limit = _limit(query)
    newest_first = sorted(objects, key=lambda obj: obj["created"], reverse=True)
    if query.get("status"):
        newest_first = [obj for obj in newest_first if obj.get("status") == query["status"]]
    if query.get("starting_after"):
        ids = [obj["id"] for obj in newest_first]
        if query["starting_after"] in ids:
            newest_first = newest_first[ids.index(query["starting_after"]) + 1 :]
    return {
        "object": "list",
        "data": copy.deepcopy(newest_first[:limit]),
        "has_more": len(newest_first) > limit,
        "url": url,
    }


# --- The middleware ----------------------------------------------------------------

TRANSACTION = re.compile(r"^/v1/balance_transactions/(?P<id>txn_\w+)$")
PAYOUT = re.compile(r"^/v1/payouts/(?P<id>po_\w+)$")
DISPUTE = re.compile(r"^/v1/disputes/(?P<id>dp_\w+)$")
CONTROL_DISPUTE_CLOSE = re.compile(r"^/_ledger/disputes/(?P<id>dp_\w+)/close$")
CONTROL_PAYOUT = re.compile(r"^/_ledger/payouts/(?P<id>po_\w+)/(?P<outcome>pay|fail)$")


def _missing(what: str, object_id: str) -> web.Response:
    return stripe_error(
        404,
        {"type": "invalid_request_error", "code": "resource_missing", "message": f"No such {what}: '{object_id}'"},
    )


def make_ledger_middleware(ledger: Ledger = LEDGER) -> Middleware:
    """Answers the balance-transaction, payout, dispute and balance calls, and the `/_ledger` controls."""

    async def ledger_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if request.method == "DELETE" and path == "/_config/data":
            response = await handler(request)
            ledger.clear()
            return response
        try:
            if path.startswith("/_ledger/") and request.method == "POST":
                return await _control(ledger, request)
            if request.method == "GET":
                answer = _read(ledger, request)
                if answer is not None:
                    return answer
            if request.method == "POST" and path == "/v1/payouts":
                params = dict((await request.post()).items())
                return json_response(200, manual_payout(ledger, {key: str(value) for key, value in params.items()}))
        except ListRefused as exc:
            return stripe_error(400, {"type": "invalid_request_error", "message": str(exc)})
        return await handler(request)

    return ledger_middleware


def _read(ledger: Ledger, request: web.Request) -> web.Response | None:
    path = request.path
    query = dict(request.query)
    if path == "/v1/balance_transactions":
        return json_response(200, list_transactions(ledger, query))
    if match := TRANSACTION.match(path):
        transaction = _transaction(match["id"])
        if transaction is None:
            return _missing("balance transaction", match["id"])
        return json_response(200, export_transaction(transaction, ledger, expand_source=_expands(query, "source")))
    if path == "/v1/balance":
        return json_response(200, balance(ledger))
    if path == "/v1/payouts":
        return json_response(200, _list_objects(list(ledger.payouts.values()), query, path))
    if match := PAYOUT.match(path):
        payout = ledger.payouts.get(match["id"])
        return json_response(200, copy.deepcopy(payout)) if payout else _missing("payout", match["id"])
    if path == "/v1/disputes":
        return json_response(200, _list_objects(list(ledger.disputes.values()), query, path))
    if match := DISPUTE.match(path):
        dispute = ledger.disputes.get(match["id"])
        return json_response(200, copy.deepcopy(dispute)) if dispute else _missing("dispute", match["id"])
    return None


async def _control(ledger: Ledger, request: web.Request) -> web.Response:
    body = await request.read()
    try:
        spec = json.loads(body or b"{}")
    except ValueError:
        spec = {}
    path = request.path
    try:
        if path == "/_ledger/disputes":
            return json_response(200, open_dispute(ledger, spec))
        if match := CONTROL_DISPUTE_CLOSE.match(path):
            return json_response(200, close_dispute(ledger, match["id"], str(spec.get("outcome"))))
        if path == "/_ledger/payouts":
            return json_response(200, automatic_payout(ledger, str(spec.get("currency") or "usd").lower()))
        if match := CONTROL_PAYOUT.match(path):
            return json_response(200, settle_payout(ledger, match["id"], paid=match["outcome"] == "pay"))
        if path == "/_ledger/seed":
            return json_response(200, seed(ledger, spec))
    except LookupError as exc:
        return _missing("object", str(exc))
    return _missing("control", path)


__all__ = ["LEDGER", "Ledger", "card_fee", "install", "make_ledger_middleware", "set_charge_fee"]
