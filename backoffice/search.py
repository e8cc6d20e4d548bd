"""
The support desk's one search box: what a person types, read as every kind of
identifier it could be, each an exact match on an indexed column.

A customer writes in with what they have: the short order number of the order
page ("Order ebb697fc", our payment id's first 8 characters), an amount as they
saw it ("24", "24.00", "$24", "¥500", "24 EUR"), the card's last 4 digits, their
email in whatever case, or staff paste an id from Stripe (`pi_…`, `ch_…`, `re_…`,
`dp_…`). `parse_search` reads the text (no database); `search_filter` turns what
it read into one `Q` whose every branch uses an index, so a search costs one
query at a million payments:

- our id: the primary key; a prefix of 8 to 31 hex digits is a range on it
  (every UUID between `prefix000…` and `prefixfff…`), which the primary key's
  index answers without a scan;
- PaymentIntent id, order reference, idempotency key: their indexes;
- charge id: the webhook events about that charge (`WebhookEvent.object_id`);
- refund and dispute ids: their unique columns (looked up first);
- email: `UPPER(customer_email)` (an expression index) and the API account's;
- amount: the `amount` index, in each currency whose exponent makes the typed
  number a whole amount of minor units (payments.currencies);
- card last 4: its index.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.db.models import Q

from payments.currencies import CURRENCIES
from payments.models import Dispute
from refunds.models import Refund
from webhooks.models import WebhookEvent

# The shortest prefix of our id that search takes: the order page shows 8 characters.
MIN_ID_PREFIX = 8
# At most this many payments found through another table (a charge's events, an account's email).
RELATED_LIMIT = 1000
# Stripe's id prefixes, by what they name.
INTENT_PREFIXES = ("pi_",)
CHARGE_PREFIXES = ("ch_", "py_")
REFUND_PREFIXES = ("re_", "pyr_")
DISPUTE_PREFIXES = ("dp_", "du_")

HEX = re.compile(r"[0-9a-f]+")
# "Order ebb697fc", "order #ebb697fc": what the order page's heading says.
ORDER_WORD = re.compile(r"^(?:order|payment)\s*[#:]?\s*(?P<rest>\S+)$", re.IGNORECASE)
NUMBER = r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
# A currency written before or after the number: a symbol ($, ¥, CA$) or an ISO code.
CURRENCY_MARK = r"(?P<{name}>[^\d\s.,]{{1,4}})"
AMOUNT_PATTERNS = (
    re.compile(rf"^{NUMBER}$"),
    re.compile(rf"^{CURRENCY_MARK.format(name='before')}\s*{NUMBER}$"),
    re.compile(rf"^{NUMBER}\s*{CURRENCY_MARK.format(name='after')}$"),
)


def _symbols() -> dict[str, str]:
    """Each currency symbol of payments.currencies (`$`, `¥`, `CA$`...) to its code; `$` is usd."""
    symbols: dict[str, str] = {}
    for code, currency in CURRENCIES.items():
        if currency.symbol.strip():
            symbols.setdefault(currency.symbol.strip(), code)
    return symbols


SYMBOLS = _symbols()


@dataclass(frozen=True)
class AmountTerm:
    """One reading of a typed amount: `minor` units in any of `currencies` (lowercase codes)."""

    minor: int
    currencies: frozenset[str] | None = None
    # With `currencies` None: every currency with this many decimals, known or not (unknown ones have 2).
    decimals: int | None = None


@dataclass(frozen=True)
class ParsedSearch:
    """
    What a search text can mean; every field is None (or empty) when the text
    cannot be that kind. `text` is the stripped text, matched exactly against the
    PaymentIntent id, the order reference and the idempotency key.
    """

    text: str
    payment_id: uuid.UUID | None = None
    # (lowest, highest) UUID of a typed prefix of our id.
    payment_id_range: tuple[uuid.UUID, uuid.UUID] | None = None
    charge_id: str | None = None
    refund_id: str | None = None
    dispute_id: str | None = None
    email: str | None = None
    amounts: tuple[AmountTerm, ...] = field(default_factory=tuple)
    card_last4: str | None = None

    @property
    def kinds(self) -> list[str]:
        """The kinds of identifier the text was read as, for the page to say what was looked for."""
        kinds = ["order reference", "idempotency key"]
        if self.text.startswith(INTENT_PREFIXES):
            kinds.insert(0, "PaymentIntent id")
        for name, value in (
            ("payment id", self.payment_id),
            ("start of a payment id", self.payment_id_range),
            ("charge id", self.charge_id),
            ("refund id", self.refund_id),
            ("dispute id", self.dispute_id),
            ("email", self.email),
            ("amount", self.amounts),
            ("card's last 4 digits", self.card_last4),
        ):
            if value:
                kinds.append(name)
        return kinds


def parse_search(text: str) -> ParsedSearch:
    """Read a search box's text as every kind of identifier it can be (see the module's docstring)."""
    text = text.strip()
    candidate = text
    worded = ORDER_WORD.match(text)
    if worded:
        candidate = worded.group("rest")
    lowered = candidate.lower()
    payment_id, id_range = _payment_id(lowered)
    return ParsedSearch(
        text=text,
        payment_id=payment_id,
        payment_id_range=id_range,
        charge_id=candidate if candidate.startswith(CHARGE_PREFIXES) else None,
        refund_id=candidate if candidate.startswith(REFUND_PREFIXES) else None,
        dispute_id=candidate if candidate.startswith(DISPUTE_PREFIXES) else None,
        email=text if "@" in text and " " not in text else None,
        amounts=parse_amount(text),
        card_last4=_card_last4(text),
    )


def _payment_id(text: str) -> tuple[uuid.UUID | None, tuple[uuid.UUID, uuid.UUID] | None]:
    try:
        return uuid.UUID(text), None
    except ValueError:
        pass
    digits = text.replace("-", "")
    if MIN_ID_PREFIX <= len(digits) < 32 and HEX.fullmatch(digits):
        padding = 32 - len(digits)
        return None, (uuid.UUID(digits + "0" * padding), uuid.UUID(digits + "f" * padding))
    return None, None


def _card_last4(text: str) -> str | None:
    # "•••• 4242", "**** 4242", "4242".
    digits = text.lstrip("•*xX. ")
    return digits if len(digits) == 4 and digits.isdigit() else None


def parse_amount(text: str) -> tuple[AmountTerm, ...]:
    """
    An amount as people type it, in minor units, per currency exponent:

    - `24`: 2400 in two-decimal currencies, 24 in zero-decimal ones, 24000 in three-decimal ones;
    - `24.50`: 2450 and 24500 (not a whole amount in a zero-decimal currency);
    - `$24`, `24 usd`, `USD 24`: 2400 in usd only; `¥500`: 500 in jpy;
    - `1,234.50`: thousands separators are allowed.

    Answers nothing for text that is not an amount, or names an unknown currency.
    """
    text = text.strip()
    for pattern in AMOUNT_PATTERNS:
        match = pattern.match(text)
        if match:
            break
    else:
        return ()
    try:
        value = Decimal(match.group("number").replace(",", ""))
    except InvalidOperation:
        return ()
    mark = (match.groupdict().get("before") or match.groupdict().get("after") or "").strip()
    if mark:
        code = SYMBOLS.get(mark) or (mark.lower() if mark.lower() in CURRENCIES else None)
        if code is None:
            return ()
        currency = CURRENCIES[code]
        try:
            return (AmountTerm(minor=currency.to_minor(value), currencies=frozenset({code})),)
        except ValueError:
            return ()
    readings = []
    for decimals in sorted({currency.decimals for currency in CURRENCIES.values()}):
        minor = value.scaleb(decimals)
        if minor == minor.to_integral_value() and minor > 0:
            readings.append(AmountTerm(minor=int(minor), decimals=decimals))
    return tuple(readings)


def _amount_q(term: AmountTerm) -> Q:
    if term.currencies is not None:
        return Q(amount=term.minor, currency__in=sorted(term.currencies))
    others = sorted(code for code, currency in CURRENCIES.items() if currency.decimals != term.decimals)
    if term.decimals == 2:
        # Two decimals is also what a currency outside the table is shown with.
        return Q(amount=term.minor) & ~Q(currency__in=others)
    same = sorted(code for code, currency in CURRENCIES.items() if currency.decimals == term.decimals)
    return Q(amount=term.minor, currency__in=same)


def search_filter(parsed: ParsedSearch) -> Q:
    """
    One `Q` over `payments.Payment` matching every reading of `parsed`: an OR of
    exact matches, each on an index. Refunds, disputes, charges and API accounts
    are looked up first (one query each, on their own indexes), never joined over
    all payments.
    """
    text = parsed.text
    if not text:
        return Q()
    match = Q(order_reference=text) | Q(idempotency_key=text)
    if text.startswith(INTENT_PREFIXES):
        match |= Q(stripe_payment_intent_id=text)
    if parsed.payment_id is not None:
        match |= Q(pk=parsed.payment_id)
    if parsed.payment_id_range is not None:
        lowest, highest = parsed.payment_id_range
        match |= Q(pk__gte=lowest, pk__lte=highest)
    # Rows of other tables are looked up first, each on its own index: an IN (subquery)
    # inside an OR would make PostgreSQL test it on every payment instead.
    related = []
    if parsed.charge_id:
        related.append(WebhookEvent.objects.filter(object_id=parsed.charge_id, payment_id__isnull=False))
    if parsed.refund_id:
        related.append(Refund.objects.filter(stripe_refund_id=parsed.refund_id))
    if parsed.dispute_id:
        related.append(Dispute.objects.filter(stripe_dispute_id=parsed.dispute_id))
    for rows in related:
        match |= Q(pk__in=list(rows.values_list("payment_id", flat=True)[:RELATED_LIMIT]))
    if parsed.email:
        match |= Q(customer_email__iexact=parsed.email)
        accounts = get_user_model().objects.filter(email__iexact=parsed.email).values_list("pk", flat=True)
        match |= Q(user_id__in=list(accounts[:RELATED_LIMIT]))
    for amount in parsed.amounts:
        match |= _amount_q(amount)
    if parsed.card_last4:
        match |= Q(card_last4=parsed.card_last4)
    return match


def search_payments(queryset, text: str):
    """`queryset` narrowed to the payments `text` names (all of them for empty text)."""
    parsed = parse_search(text)
    if not parsed.text:
        return queryset
    return queryset.filter(search_filter(parsed))
